"""apply / plan / export against the real RabbitMQ, each test in its own vhost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aio_pika
import httpx
import pytest

from amqpq.errors import BrokerUnreachableError, ManagementAPIError, TopologyConflictError
from amqpq.settings import Settings
from amqpq.topology.definitions import topology_definitions
from amqpq.topology.infra import effective_topology
from amqpq.topology.loader import load_topology
from amqpq.topology.models import Topology
from amqpq.topology.plan import plan_topology
from amqpq.transport.declare import declare_topology, declare_topology_sync
from amqpq.transport.management import ManagementClient

pytestmark = pytest.mark.rabbitmq

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "amqpq.yaml"

EVERY_KIND = """
exchanges:
  - {name: tasks, type: direct, alternate_exchange: unrouted}
  - {name: events, type: topic}
  - {name: broadcast, type: fanout}
  - {name: reports, type: headers}
  - {name: unrouted, type: fanout}
  - name: mirror
    type: topic
    internal: true
    bindings: [{exchange: events, routing_key: "order.#"}]
queues:
  - name: default
    type: quorum
    single_active_consumer: true
    bindings: [{exchange: tasks, routing_key: default}]
  - name: high
    max_priority: 10
    message_ttl: 60000
    bindings: [{exchange: tasks, routing_key: high}]
  - name: orders
    bindings: [{exchange: mirror, routing_key: "order.*"}]
  - name: audit
    bindings: [{exchange: broadcast}, {exchange: amq.topic, routing_key: "audit.#"}]
  - name: lost
    bindings: [{exchange: unrouted}]
  - name: pdf
    max_length: 1000
    bindings:
      - {exchange: reports, arguments: {x-match: all, format: pdf, size: a4}}
      - {exchange: reports, arguments: {x-match: any, urgent: "yes", format: pdfa}}
  - name: history
    type: stream
    max_age: 7D
routes:
  "*": {exchange: tasks, routing_key: default}
  "reports.*": {exchange: reports, headers: {format: pdf, size: a4}}
"""


@pytest.fixture
def every_kind(write_yaml: Callable[..., Path]) -> Topology:
    return load_topology(write_yaml(EVERY_KIND), {})


def plan_lines(api: ManagementClient, vhost: str, topology: Topology) -> list[str]:
    plan = plan_topology(effective_topology(topology), api.snapshot(vhost))
    return [item.line() for item in plan.items if item.action != "unchanged"]


async def publish_and_count(
    settings: Settings, exchange: str | None, key: str = "", headers: dict[str, str] | None = None
) -> dict[str, int]:
    """Publish one message (unless exchange is None), then count messages per queue.

    Passive declares give exact counts; the management API lags by its stats interval.
    """
    connection = await aio_pika.connect(
        host=settings.primary.host,
        virtualhost=settings.vhost,
        client_properties={"connection_name": "amqpq test publish_and_count"},
    )
    async with connection:
        channel = await connection.channel()
        if exchange is not None:
            target = await channel.get_exchange(exchange, ensure=False)
            await target.publish(aio_pika.Message(b"{}", headers=headers or {}), routing_key=key)
        counts = {}
        for name in ("default", "high", "orders", "audit", "lost", "pdf"):
            queue = await channel.declare_queue(name, passive=True)
            counts[name] = queue.declaration_result.message_count or 0
        return counts


def test_apply_declares_every_exchange_and_queue_type_and_binding_form(
    settings: Settings, vhost: str, api: ManagementClient, every_kind: Topology
) -> None:
    result = declare_topology_sync(settings, every_kind)
    assert not result.unchanged
    queues = {q["name"]: q for q in api.list_queues(vhost)}
    assert queues["default"]["type"] == "quorum"
    assert queues["history"]["type"] == "stream"
    assert queues["high"]["arguments"]["x-max-priority"] == 10
    assert queues["default"]["arguments"]["x-delivery-limit"] == 20
    assert queues["default.dlq"]["type"] == "quorum"
    assert "history.dlq" not in queues  # streams cannot dead-letter
    exchanges = {x["name"]: x for x in api.list_exchanges(vhost)}
    assert exchanges["mirror"]["internal"] is True
    assert exchanges["tasks"]["arguments"] == {"alternate-exchange": "unrouted"}
    assert exchanges["amqpq.delay.29"]["type"] == "headers"
    bindings = api.list_bindings(vhost)
    e2e = {
        (b["source"], b["destination"], b["routing_key"])
        for b in bindings
        if b["destination_type"] == "exchange"
    }
    assert ("events", "mirror", "order.#") in e2e
    assert ("amqpq.delay.deliver", "mirror", "") in e2e
    # The plan right after apply: nothing to do.
    assert plan_lines(api, vhost, every_kind) == []


def test_applied_bindings_route_as_the_matcher_predicts(
    settings: Settings, every_kind: Topology
) -> None:
    declare_topology_sync(settings, every_kind)

    async def scenario() -> None:
        counts = await publish_and_count(settings, "events", "order.created")
        assert counts["orders"] == 1  # through the internal e2e-bound exchange
        counts = await publish_and_count(settings, "tasks", "nobody")
        assert counts["lost"] == 1  # alternate exchange
        counts = await publish_and_count(settings, "reports", "", {"format": "pdf", "size": "a4"})
        assert counts["pdf"] == 1
        counts = await publish_and_count(settings, "reports", "", {"urgent": "yes"})
        assert counts["pdf"] == 2  # x-match any
        counts = await publish_and_count(settings, "amq.topic", "audit.login")
        assert counts["audit"] == 1

    asyncio.run(scenario())


def test_apply_twice_is_idempotent(settings: Settings, vhost: str, api: ManagementClient) -> None:
    topology = load_topology(EXAMPLE, {})
    first = declare_topology_sync(settings, topology)
    second = declare_topology_sync(settings, topology)
    assert second.created == ()
    assert sorted(second.unchanged) == sorted(first.created)
    plan = plan_topology(effective_topology(topology), api.snapshot(vhost))
    assert {item.action for item in plan.items} == {"unchanged"}


def test_a_conflicting_queue_refuses_the_whole_file_and_declares_nothing(
    settings: Settings, vhost: str, api: ManagementClient, management: httpx.Client
) -> None:
    # Given a queue 'pdf' that already exists with another max length
    vq = vhost.replace("/", "%2F")
    management.put(
        f"/queues/{vq}/pdf", json={"durable": True, "arguments": {"x-max-length": 10}}
    ).raise_for_status()
    topology = load_topology(EXAMPLE, {})
    # When the plan is computed, it names the conflict
    conflicts = [
        item.line()
        for item in plan_topology(effective_topology(topology), api.snapshot(vhost)).conflicts
    ]
    assert len(conflicts) == 1
    assert conflicts[0].startswith("! queue pdf (classic): ")
    assert "argument x-max-length: file 100000, broker 10" in conflicts[0]
    # And apply refuses with the object's name ...
    with pytest.raises(TopologyConflictError) as caught:
        declare_topology_sync(settings, topology)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("queue 'pdf': inequivalent arg")
    # ... and declared nothing at all.
    assert [q["name"] for q in api.list_queues(vhost)] == ["pdf"]
    assert all(x["name"] == "" or x["name"].startswith("amq.") for x in api.list_exchanges(vhost))


def test_a_conflict_in_an_applied_vhost_is_reported_and_changes_nothing(
    settings: Settings, vhost: str, management: httpx.Client
) -> None:
    # Given the whole file applied (so a redeclare takes the one-round-trip path) ...
    topology = load_topology(EXAMPLE, {})
    declare_topology_sync(settings, topology)
    # ... then queue 'pdf' re-created by hand with another max length and no bindings
    vq = vhost.replace("/", "%2F")
    management.delete(f"/queues/{vq}/pdf").raise_for_status()
    management.put(
        f"/queues/{vq}/pdf", json={"durable": True, "arguments": {"x-max-length": 10}}
    ).raise_for_status()
    # When the file is applied again, it refuses with the queue's name ...
    with pytest.raises(TopologyConflictError) as caught:
        declare_topology_sync(settings, topology)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("queue 'pdf': inequivalent arg")
    # ... and changed nothing: the queue did not get its binding back.
    bindings = management.get(f"/queues/{vq}/pdf/bindings").raise_for_status().json()
    assert [b["source"] for b in bindings] == [""]


def test_a_missing_binding_in_an_applied_vhost_is_declared_again(
    settings: Settings, vhost: str, management: httpx.Client
) -> None:
    topology = load_topology(EXAMPLE, {})
    declare_topology_sync(settings, topology)
    vq = vhost.replace("/", "%2F")
    [binding] = [
        b
        for b in management.get(f"/queues/{vq}/pdf/bindings").raise_for_status().json()
        if b["source"] == "reports"
    ]
    management.delete(
        f"/bindings/{vq}/e/reports/q/pdf/{binding['properties_key']}"
    ).raise_for_status()
    again = declare_topology_sync(settings, topology)
    assert again.created == ()
    sources = [b["source"] for b in management.get(f"/queues/{vq}/pdf/bindings").json()]
    assert "reports" in sources


def test_exported_definitions_import_into_a_fresh_vhost_and_plan_unchanged(
    make_vhost: Callable[[], str], api: ManagementClient, settings: Settings
) -> None:
    topology = load_topology(EXAMPLE, {})
    definitions = json.loads(json.dumps(topology_definitions(effective_topology(topology))))
    fresh = make_vhost()
    api.import_definitions(fresh, definitions)
    plan = plan_topology(effective_topology(topology), api.snapshot(fresh))
    assert [item.line() for item in plan.items if item.action != "unchanged"] == []
    # and apply over it changes nothing
    fresh_settings = Settings(url=f"amqp://guest:guest@{settings.primary.host}/{fresh}")
    assert declare_topology_sync(fresh_settings, topology).created == ()


def test_plan_lists_objects_only_on_the_broker(
    settings: Settings, vhost: str, api: ManagementClient, management: httpx.Client
) -> None:
    vq = vhost.replace("/", "%2F")
    management.put(f"/exchanges/{vq}/legacy", json={"type": "fanout"}).raise_for_status()
    topology = load_topology(EXAMPLE, {})
    declare_topology_sync(settings, topology)
    assert plan_lines(api, vhost, topology) == ["- exchange legacy (fanout)"]


async def test_the_async_declare_names_its_connection(
    settings: Settings, every_kind: Topology
) -> None:
    result = await declare_topology(settings, every_kind, check_only=True)
    assert result.created == ()


def test_unreachable_broker_and_bad_credentials_are_clear(every_kind: Topology) -> None:
    with pytest.raises(BrokerUnreachableError, match=r"127\.0\.0\.1:1/%2F: connection refused"):
        declare_topology_sync(Settings(url="amqp://guest:guest@127.0.0.1:1/"), every_kind)
    with pytest.raises(BrokerUnreachableError, match="refused the credentials for user 'guest'"):
        declare_topology_sync(Settings(url="amqp://guest:wrong@127.0.0.1/"), every_kind)
    with pytest.raises(BrokerUnreachableError, match="vhost 'no-such-vhost' does not exist"):
        declare_topology_sync(
            Settings(url="amqp://guest:guest@127.0.0.1/no-such-vhost"), every_kind
        )


def test_management_client_errors_are_one_clear_line() -> None:
    with (
        ManagementClient("http://127.0.0.1:1", ("guest", "guest")) as down,
        pytest.raises(ManagementAPIError, match="did not answer: connection refused"),
    ):
        down.overview()
    with (
        ManagementClient("http://127.0.0.1:15672", ("guest", "wrong")) as api,
        pytest.raises(ManagementAPIError, match="refused the credentials for user 'guest'"),
    ):
        api.overview()
    with ManagementClient("http://127.0.0.1:15672", ("guest", "guest")) as api:
        with pytest.raises(ManagementAPIError, match="queue 'nope' does not exist in vhost '/'"):
            api.get_queue("/", "nope")
        assert api.vhost_exists("/")
        assert not api.vhost_exists("amqpq-no-such-vhost")


def test_management_client_manages_vhosts_and_connections(api: ManagementClient) -> None:
    name = "amqpq-test-management-vhost/with slash"
    api.create_vhost(name)
    try:
        api.set_permissions(name, "guest")
        assert api.vhost_exists(name)
        assert api.list_queues(name) == []
        assert isinstance(api.list_connections(), list)
    finally:
        api.delete_vhost(name)
    assert not api.vhost_exists(name)


def test_a_delayed_message_walks_down_the_levels_and_returns_to_its_queue(
    settings: Settings, every_kind: Topology
) -> None:
    declare_topology_sync(settings, every_kind)
    delay_ms = 5  # 0b101: waits in level 2 (4 ms) and level 0 (1 ms)
    headers = {f"amqpq-delay-bit-{level}": str((delay_ms >> level) & 1) for level in range(30)}

    async def scenario() -> None:
        await publish_and_count(
            settings, "amqpq.delay.2", "ignored", {**headers, "amqpq-delay-queue": "audit"}
        )
        await publish_and_count(
            settings, "amqpq.delay.2", "high", {**headers, "amqpq-delay-exchange": "tasks"}
        )
        for _ in range(50):
            counts = await publish_and_count(settings, None)
            if counts["audit"] and counts["high"]:
                break
            await asyncio.sleep(0.05)
        assert counts["audit"] == 1
        assert counts["high"] == 1

    asyncio.run(scenario())
