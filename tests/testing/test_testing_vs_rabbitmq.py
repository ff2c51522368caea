"""The same publishes on the in-memory broker and on RabbitMQ end in the same queues."""

from __future__ import annotations

import time
from typing import Any

import pika
import pika.exceptions
import pytest

from amqpq.errors import UnroutableError
from amqpq.settings import Settings
from amqpq.testing import TestBroker
from amqpq.topology.models import Topology
from amqpq.transport.declare import declare_topology_sync
from tests.testing.testing_helpers import SCENARIOS, TASK_SENDS, USER_QUEUES, args_for, make_app

pytestmark = pytest.mark.rabbitmq


def _channel(broker_url: str, name: str) -> tuple[pika.BlockingConnection, Any]:
    params = pika.URLParameters(broker_url)
    params.client_properties = {"connection_name": f"amqpq tests {name}"}
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def _drain_real(channel: Any, queues: list[str]) -> dict[str, set[str]]:
    """message id -> the queues holding it (and takes everything out)."""
    found: dict[str, set[str]] = {}
    for queue in queues:
        while True:
            method, properties, _ = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            found.setdefault(properties.message_id, set()).add(queue)
    return found


def _drain_memory(broker: TestBroker, queues: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for queue in queues:
        for message in broker.queue(queue).messages:
            assert message.properties.message_id is not None
            found.setdefault(message.properties.message_id, set()).add(queue)
    return found


def test_raw_publishes_reach_the_same_queues_in_memory_and_on_rabbitmq(
    settings: Settings, broker_url: str, topology: Topology
) -> None:
    declare_topology_sync(settings, topology)
    connection, channel = _channel(broker_url, "testing-vs-rabbitmq raw")
    real_unroutable: set[str] = set()
    try:
        for sid, exchange, key, headers, _ in SCENARIOS:
            try:
                channel.basic_publish(
                    exchange,
                    key,
                    b"{}",
                    pika.BasicProperties(message_id=sid, headers=headers),
                    mandatory=True,
                )
            except pika.exceptions.UnroutableError:
                real_unroutable.add(sid)
        real = _drain_real(channel, USER_QUEUES)
    finally:
        connection.close()

    memory_unroutable: set[str] = set()
    with TestBroker(make_app(topology)) as broker:
        for sid, exchange, key, headers, _ in SCENARIOS:
            try:
                broker.publish(
                    b"{}", exchange=exchange, routing_key=key, headers=headers, message_id=sid
                )
            except UnroutableError:
                memory_unroutable.add(sid)
        memory = _drain_memory(broker, USER_QUEUES)

    assert memory == real
    assert memory_unroutable == real_unroutable
    assert real == {sid: expected for sid, _, _, _, expected in SCENARIOS if expected}


def test_sent_tasks_delays_and_rejects_end_the_same_in_memory_and_on_rabbitmq(
    settings: Settings, broker_url: str, topology: Topology
) -> None:
    # Given the same App on both, sending the same tasks (one with a countdown)
    declare_topology_sync(settings, topology)
    dead_letter_queues = [f"{q}.dlq" for q in USER_QUEUES]

    def send_all(app: Any) -> None:
        for i, (task, options, _) in enumerate(TASK_SENDS):
            app.send_task(task, args_for(task), task_id=f"send-{i}", **options)
        app.send_task("tests.add", [1, 2], task_id="delayed", countdown=0.3)

    real_app = make_app(topology, settings)
    try:
        send_all(real_app)
    finally:
        real_app.close()
    time.sleep(1.0)  # the 300 ms delay runs through the broker's delay levels
    connection, channel = _channel(broker_url, "testing-vs-rabbitmq tasks")
    try:
        # When a consumer rejects one task without requeue
        method, _, _ = channel.basic_get("high_priority", auto_ack=False)
        channel.basic_reject(method.delivery_tag, requeue=False)
        real = _drain_real(channel, USER_QUEUES + dead_letter_queues)
    finally:
        connection.close()

    with TestBroker(make_app(topology)) as broker:
        send_all(broker.app)
        assert _drain_memory(broker, ["default"]).get("delayed") is None
        broker.advance(0.3)
        item = broker.memory.next_ready(["high_priority"])
        assert item is not None
        broker.memory.settle(item[2], "reject")
        memory = _drain_memory(broker, USER_QUEUES + dead_letter_queues)

    # Then every message sits in the same queues on both
    assert memory == real
    assert real["delayed"] == {"default"}
    assert "high_priority.dlq" in real[item[1].properties.message_id or ""]
