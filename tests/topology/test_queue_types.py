"""Every queue amqpq declares names its type, so a vhost that defaults to quorum queues
(RabbitMQ 4.x deployments, Amazon MQ, ``add_vhost --default-queue-type quorum``) gets
exactly the types the file says; ``plan`` and ``apply`` name a type mismatch as one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import aio_pika
import httpx
import pytest

from amqpq import App
from amqpq.errors import TopologyConflictError
from amqpq.settings import Settings
from amqpq.topology.infra import effective_topology
from amqpq.topology.loader import load_topology
from amqpq.topology.models import Topology
from amqpq.topology.plan import plan_topology
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.broadcast import Subscription
from amqpq.transport.declare import declare_topology_sync
from amqpq.transport.management import ManagementClient
from tests.support.broker import amqp_url

pytestmark = pytest.mark.rabbitmq

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "amqpq.yaml"


@pytest.fixture
def quorum_vhost(make_vhost: Callable[..., str]) -> str:
    """A vhost where a queue declared without ``x-queue-type`` becomes a quorum queue."""
    return make_vhost(default_queue_type="quorum")


def queue_types(api: ManagementClient, vhost: str) -> dict[str, str]:
    return {q["name"]: q["type"] for q in api.list_queues(vhost)}


def expected_types(topology: Topology) -> dict[str, str]:
    return {q.name: q.type for q in effective_topology(topology).queues if not q.exclusive}


async def declare_without_type(url: str, queue: str, topology: Topology | None = None) -> None:
    """What an older amqpq (or any client) did: a durable queue with no ``x-queue-type``
    (and, given a topology, the arguments amqpq declares it with)."""
    arguments = {}
    if topology is not None:
        found = effective_topology(topology).queue(queue)
        assert found is not None
        arguments = {k: v for k, v in found.declare_arguments.items() if k != "x-queue-type"}
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments=arguments)


def test_the_vhost_really_defaults_to_quorum(quorum_vhost: str, api: ManagementClient) -> None:
    # Given the fixture's vhost, a type-less declaration makes a quorum queue: the premise.
    asyncio.run(declare_without_type(amqp_url(quorum_vhost), "typeless"))
    assert queue_types(api, quorum_vhost) == {"typeless": "quorum"}


def test_apply_on_a_quorum_default_vhost_makes_exactly_the_files_types(
    quorum_vhost: str, api: ManagementClient
) -> None:
    topology = load_topology(EXAMPLE, {})
    declare_topology_sync(Settings(url=amqp_url(quorum_vhost)), topology)

    types = queue_types(api, quorum_vhost)
    assert types == expected_types(topology)
    assert types["pdf"] == "classic"  # the file's default type
    assert types["default"] == "quorum"
    assert types["pdf.dlq"] == "classic"
    assert types["amqpq.delay.10"] == "quorum"
    # And the plan right after apply has nothing to say.
    plan = plan_topology(effective_topology(topology), api.snapshot(quorum_vhost))
    assert [i.line() for i in plan.items if i.action != "unchanged"] == []


def test_classic_delay_levels_on_a_quorum_default_vhost_stay_classic(
    quorum_vhost: str, api: ManagementClient, write_yaml: Callable[..., Path]
) -> None:
    path = write_yaml(
        """
        exchanges: [{name: tasks}]
        queues: [{name: work, bindings: [{exchange: tasks, routing_key: work}]}]
        routes: {"*": {exchange: tasks, routing_key: work}}
        infrastructure: {delay_queue_type: classic}
        """
    )
    declare_topology_sync(Settings(url=amqp_url(quorum_vhost)), load_topology(path, {}))
    types = queue_types(api, quorum_vhost)
    assert {types[f"amqpq.delay.{level}"] for level in range(30)} == {"classic"}
    assert types["work"] == types["work.dlq"] == "classic"


def test_a_queue_of_the_wrong_type_is_reported_as_a_type_mismatch(
    quorum_vhost: str, api: ManagementClient
) -> None:
    # Given a work queue an older amqpq declared without a type: the vhost made it quorum.
    topology = load_topology(EXAMPLE, {})
    asyncio.run(declare_without_type(amqp_url(quorum_vhost), "pdf", topology))

    plan = plan_topology(effective_topology(topology), api.snapshot(quorum_vhost))
    assert [i.line() for i in plan.conflicts] == [
        "! queue pdf (classic): type: file classic, broker quorum (RabbitMQ cannot change a "
        "queue's type: delete the queue (after moving its messages) and apply again, or write "
        "the broker's type in the file)"
    ]
    with pytest.raises(TopologyConflictError) as caught:
        declare_topology_sync(Settings(url=amqp_url(quorum_vhost)), topology)
    assert "queue 'pdf': inequivalent arg 'x-queue-type'" in str(caught.value)
    assert "RabbitMQ cannot change a queue's type" in str(caught.value)
    assert set(queue_types(api, quorum_vhost)) == {"pdf"}  # nothing was declared


def test_classic_delay_levels_of_an_older_amqpq_conflict_with_a_way_out(
    settings: Settings,
    vhost: str,
    api: ManagementClient,
    management: httpx.Client,
    write_yaml: Callable[..., Path],
) -> None:
    # Given a deployment whose delay levels are classic (as amqpq declared them before).
    text = """
        exchanges: [{name: tasks}]
        queues: [{name: work, bindings: [{exchange: tasks, routing_key: work}]}]
        routes: {"*": {exchange: tasks, routing_key: work}}
        """
    classic = load_topology(write_yaml(text + "infrastructure: {delay_queue_type: classic}\n"), {})
    declare_topology_sync(settings, classic)

    # When the file asks for the default (quorum) delay levels:
    quorum = load_topology(write_yaml(text, "quorum.yaml"), {})
    plan = plan_topology(effective_topology(quorum), api.snapshot(vhost))
    conflicts = [i.line() for i in plan.conflicts]
    assert len(conflicts) == 30
    assert conflicts[0] == (
        "! queue amqpq.delay.0 (quorum): type: file quorum, broker classic (RabbitMQ cannot "
        "change a queue's type: keep the delay levels classic with "
        "infrastructure.delay_queue_type: classic, or move them (docs/delays.md, "
        '"Queue type of the delay levels"))'
    )
    with pytest.raises(TopologyConflictError) as caught:
        declare_topology_sync(settings, quorum)
    assert "infrastructure.delay_queue_type: classic" in caught.value.problems[0]
    # Both ways out that docs/delays.md describes work: keep them classic ...
    assert declare_topology_sync(settings, classic).created == ()
    # ... or, with nothing waiting in them, delete the levels (if empty) and apply.
    vq = quote(vhost, safe="")
    for level in range(30):
        management.delete(
            f"/queues/{vq}/amqpq.delay.{level}", params={"if-empty": "true"}
        ).raise_for_status()
    declare_topology_sync(settings, quorum)
    assert queue_types(api, vhost)["amqpq.delay.29"] == "quorum"


def test_a_classic_queue_declared_without_a_type_matches_the_explicit_classic(
    settings: Settings, vhost: str, api: ManagementClient, management: httpx.Client
) -> None:
    # Existing deployments: queues an older amqpq declared without x-queue-type (classic
    # on a classic-default vhost) are unchanged when the type is now sent.
    topology = load_topology(EXAMPLE, {})
    asyncio.run(declare_without_type(settings.primary.url, "pdf", topology))
    plan = plan_topology(effective_topology(topology), api.snapshot(vhost))
    assert not plan.conflicts
    result = declare_topology_sync(settings, topology)
    assert "queue 'pdf'" in result.unchanged


# Subscription hands aio-pika a plain function as its consumer callback (deprecated there).
@pytest.mark.filterwarnings("ignore:You probably registering the non-coroutine:DeprecationWarning")
def test_result_queues_and_live_subscriptions_are_classic_on_a_quorum_default_vhost(
    quorum_vhost: str, api: ManagementClient
) -> None:
    url = amqp_url(quorum_vhost)
    # A durable result queue a producer names (declared by the producer when missing).
    app = App("types", topology=load_topology(EXAMPLE, {}), settings=Settings(url=url))
    declare_topology_sync(app.settings, app.topology)
    try:
        app.send_task("types.noop", result_queue="results.types")
    finally:
        app.close()

    # An exclusive, auto-delete subscription (what control commands and events use):
    # a quorum queue cannot be exclusive, so without the type it would be refused.
    async def subscribe() -> str:
        broker = AsyncBroker(Settings(url=url), "test")
        subscription = Subscription(
            broker,
            exchange="amqpq.events",
            queue="types.events",
            routing_keys=["#"],
            on_message=lambda *_: None,
        )
        await subscription.start()
        try:
            return {q["name"]: q["type"] for q in api.list_queues(quorum_vhost)}["types.events"]
        finally:
            await subscription.close()
            await broker.close()

    assert asyncio.run(subscribe()) == "classic"
    assert queue_types(api, quorum_vhost)["results.types"] == "classic"
