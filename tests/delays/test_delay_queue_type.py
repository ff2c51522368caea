"""The delay levels are quorum queues by default (a classic queue lives on one node, and
countdown sends routed through it fail while that node is down); classic on request.

On one node: the type and arguments RabbitMQ holds, and delays through either type fire
in order, never early. The loss of a node is the cluster suite's (tests/cluster/).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from amqpq.app import App
from amqpq.settings import Settings
from amqpq.testing import TestBroker
from amqpq.topology.loader import load_topology
from amqpq.transport.declare import declare_topology, declare_topology_sync
from amqpq.transport.management import ManagementClient
from tests.delays.delay_helpers import TOPOLOGY_FILE
from tests.support.aio_clients import take

pytestmark = pytest.mark.rabbitmq

EARLY = 0.15  # a broker clock read and ours may disagree by a little


def topology_with(delay_queue_type: str, tmp_path: Path) -> Path:
    path = tmp_path / f"delays-{delay_queue_type}.yaml"
    text = TOPOLOGY_FILE.read_text().replace(
        "infrastructure:\n", f"infrastructure:\n  delay_queue_type: {delay_queue_type}\n"
    )
    path.write_text(text)
    return path


def test_the_delay_levels_are_quorum_with_at_least_once_dead_lettering(
    settings: Settings, vhost: str
) -> None:
    declare_topology_sync(settings, load_topology(TOPOLOGY_FILE))
    with ManagementClient.from_settings(settings) as api:
        queues = {q["name"]: q for q in api.list_queues(vhost)}
    for level in range(30):
        queue = queues[f"amqpq.delay.{level}"]
        assert queue["type"] == "quorum"
        assert queue["arguments"]["x-message-ttl"] == 2**level
        assert queue["arguments"]["x-dead-letter-strategy"] == "at-least-once"
        assert queue["arguments"]["x-overflow"] == "reject-publish"


@pytest.mark.parametrize("delay_queue_type", ["quorum", "classic"])
async def test_delays_fire_in_order_and_never_early_through_either_queue_type(
    delay_queue_type: str,
    settings: Settings,
    vhost: str,
    tmp_path: Path,
    connection: AbstractRobustConnection,
) -> None:
    topology = load_topology(topology_with(delay_queue_type, tmp_path))
    await declare_topology(settings, topology)
    with ManagementClient.from_settings(settings) as api:
        assert api.get_queue(vhost, "amqpq.delay.9")["type"] == delay_queue_type
    app = App("dt-types", settings=settings, topology=topology)
    try:
        # Long first: a shorter delay sent later must not wait behind it.
        countdowns = {"c1500": 1.5, "c300": 0.3, "c900": 0.9, "c50": 0.05}
        sent: dict[str, float] = {}
        for task_id, countdown in countdowns.items():
            sent[task_id] = time.time()
            await app.asend_task("dt.stamp", [task_id], task_id=task_id, countdown=countdown)
        arrived: dict[str, float] = {}
        channel = await connection.channel()
        for message in await take(channel, "work", len(countdowns), timeout=20):
            arrived[str(message.message_id)] = time.time()
    finally:
        await app.aclose()
        app.close()
    assert sorted(arrived, key=arrived.__getitem__) == ["c50", "c300", "c900", "c1500"]
    for task_id, countdown in countdowns.items():
        assert arrived[task_id] >= sent[task_id] + countdown - EARLY


@pytest.mark.parametrize("delay_queue_type", ["quorum", "classic"])
def test_the_memory_broker_routes_delays_the_same_way_for_either_type(
    delay_queue_type: str, tmp_path: Path
) -> None:
    topology = load_topology(topology_with(delay_queue_type, tmp_path))
    app = App("dt-memory", topology=topology)
    with TestBroker(app) as broker:
        app.send_task("dt.stamp", ["later"], task_id="later", countdown=0.9)
        app.send_task("dt.stamp", ["sooner"], task_id="sooner", countdown=0.3)
        assert broker.memory.queue("amqpq.delay.9").type == delay_queue_type
        assert broker.queue("work").count == 0
        broker.advance(1.0)
        assert [t.id for t in broker.queue("work").tasks] == ["sooner", "later"]
