"""A delay survives a broker crash: on a RabbitMQ node of the test's own (tests/support/brokernode.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from amqpq.app import App
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.transport.declare import declare_topology_sync
from tests.delays.delay_helpers import TOPOLOGY_FILE
from tests.support.brokernode import BrokerNode, rabbitmq_available
from tests.support.pika_clients import queue_depth

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.slow,
    pytest.mark.skipif(not rabbitmq_available(), reason="no rabbitmq-server package here"),
]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[BrokerNode]:
    node = BrokerNode.with_free_ports(None, tmp_path)
    node.start()
    try:
        yield node
    finally:
        if node.running:
            node.kill()  # its data is thrown away: no need for a clean shutdown


def test_a_countdown_survives_a_broker_crash_and_arrives_after_its_delay(
    node: BrokerNode,
) -> None:
    # Given the topology on a node of our own and a task sent with an 8 s countdown
    topology = load_topology(TOPOLOGY_FILE)
    settings = Settings(url=node.url)
    declare_topology_sync(settings, topology)
    app = App("dt-restart", settings=settings, topology=topology)
    try:
        sent = time.time()
        result = app.send_task("dt.stamp", ["survivor"], countdown=8, ignore_result=True)
    finally:
        app.close()
    assert queue_depth(node.url, "amqpq.delay.12") == 1  # 8,000 ms: first 4,096 ms in level 12

    # When the node is killed (no clean shutdown) and started again
    node.kill()
    node.start()

    # Then the task arrives in its queue, after its delay and not before
    deadline = time.monotonic() + 30
    while (count := queue_depth(node.url, "work")) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    arrived = time.time()
    assert count == 1
    assert arrived >= sent + 8 - 0.15
    connection = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        _, _, body = connection.channel().basic_get("work", auto_ack=True)
    finally:
        connection.close()
    assert body is not None
    assert json.loads(body)["id"] == result.id
