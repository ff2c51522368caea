"""Infrastructure expansion, plan diff, definitions export and graph, without a broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from amqpq.delay import plan_delay
from amqpq.errors import TopologyError
from amqpq.topology.definitions import topology_definitions
from amqpq.topology.graph import render_graph
from amqpq.topology.infra import (
    DELAY_LEVELS,
    dead_letter_exchange_name,
    dead_letter_queue_name,
    delay_exchange_name,
    delay_queue_name,
    effective_topology,
)
from amqpq.topology.loader import load_topology
from amqpq.topology.models import Topology
from amqpq.topology.plan import (
    BrokerExchange,
    BrokerQueue,
    BrokerSnapshot,
    plan_topology,
    snapshot_from_management,
)
from amqpq.topology.routing import Router, route_targets

Parse = Callable[..., Topology]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "amqpq.yaml"


@pytest.fixture(scope="module")
def example() -> Topology:
    return load_topology(EXAMPLE, {})


def test_name_helpers() -> None:
    assert dead_letter_exchange_name("amqpq") == "amqpq.dlx"
    assert dead_letter_queue_name("default") == "default.dlq"
    assert delay_exchange_name("amqpq", 0) == "amqpq.delay.0"
    assert delay_exchange_name("acme", 29) == "acme.delay.29"
    with pytest.raises(ValueError, match=r"0\.\.29"):
        delay_exchange_name("amqpq", DELAY_LEVELS)


def test_expansion_adds_the_dlx_one_dlq_per_work_queue_and_30_delay_levels(
    example: Topology,
) -> None:
    effective = effective_topology(example)
    added_x = [x.name for x in effective.exchanges if x.managed_by_amqpq]
    added_q = {q.name: q for q in effective.queues if q.managed_by_amqpq}
    assert added_x == [
        "amqpq.dlx",
        *(f"amqpq.delay.{level}" for level in range(30)),
        "amqpq.delay.deliver",
        "amqpq.control",
        "amqpq.events",
    ]
    assert added_q["amqpq.revoked"].declare_arguments["x-queue-type"] == "stream"
    assert added_q["amqpq.revoked"].declare_arguments["x-max-age"] == "24h"
    assert added_q["default.dlq"].type == "quorum"  # the work queue is quorum
    assert added_q["pdf.dlq"].type == "classic"
    assert added_q["pdf.dlq"].declare_arguments["x-queue-type"] == "classic"
    assert added_q["pdf.dlq"].bindings[0].exchange == "amqpq.dlx"
    assert added_q["pdf.dlq"].bindings[0].routing_key == "pdf"
    level5 = added_q["amqpq.delay.5"]
    # Quorum by default (they survive a node's loss), dead-lettering at least once.
    assert level5.declare_arguments == {
        "x-message-ttl": 32,
        "x-dead-letter-exchange": "amqpq.delay.4",
        "x-overflow": "reject-publish",
        "x-dead-letter-strategy": "at-least-once",
        "x-queue-type": "quorum",
    }
    assert added_q["amqpq.delay.0"].declare_arguments["x-dead-letter-exchange"] == (
        "amqpq.delay.deliver"
    )
    # Expanding twice changes nothing.
    assert effective_topology(effective) == effective


def test_work_queues_get_dead_lettering_and_quorum_queues_a_delivery_limit(
    example: Topology,
) -> None:
    effective = effective_topology(example)
    assert effective.queue("pdf").declare_arguments == {  # type: ignore[union-attr]
        "x-max-length": 100000,
        "x-dead-letter-exchange": "amqpq.dlx",
        "x-dead-letter-routing-key": "pdf",
        "x-queue-type": "classic",
    }
    assert effective.queue("default").declare_arguments == {  # type: ignore[union-attr]
        "x-dead-letter-exchange": "amqpq.dlx",
        "x-dead-letter-routing-key": "default",
        "x-delivery-limit": 20,
        "x-overflow": "reject-publish",
        "x-dead-letter-strategy": "at-least-once",
        "x-queue-type": "quorum",
    }


def test_values_the_file_sets_are_respected(parse: Parse) -> None:
    t = parse(
        """
        exchanges: [{name: own-dlx, type: fanout}]
        queues:
          - {name: own, type: quorum, dead_letter_exchange: own-dlx, delivery_limit: 3}
          - {name: drops, type: quorum, overflow: drop-head}
          - {name: s, type: stream}
          - {name: mine, exclusive: true}
        infrastructure: {prefix: acme, delivery_limit: 7, delay: false}
        """
    )
    effective = effective_topology(t)
    names = [q.name for q in effective.queues]
    assert names == ["own", "drops", "s", "mine", "drops.dlq", "acme.revoked", "acme.events"]
    own = effective.queue("own").declare_arguments  # type: ignore[union-attr]
    assert own["x-dead-letter-exchange"] == "own-dlx"
    assert own["x-delivery-limit"] == 3
    assert own["x-dead-letter-strategy"] == "at-least-once"
    drops = effective.queue("drops").declare_arguments  # type: ignore[union-attr]
    assert drops["x-overflow"] == "drop-head"
    assert drops["x-delivery-limit"] == 7
    assert "x-dead-letter-strategy" not in drops  # needs reject-publish
    assert drops["x-dead-letter-exchange"] == "acme.dlx"
    assert effective.queue("s").declare_arguments == {"x-queue-type": "stream"}  # type: ignore[union-attr]
    assert not any(x.name.startswith("acme.delay") for x in effective.exchanges)


def test_infrastructure_can_be_switched_off(parse: Parse) -> None:
    t = parse(
        "queues: [{name: q, type: quorum}]\n"
        "infrastructure: {dead_letters: false, delay: false, delivery_limit: null,"
        " operations: false}\n"
    )
    assert effective_topology(t).queues == t.queues
    assert effective_topology(t).exchanges == ()


def test_a_file_object_may_not_take_an_infrastructure_name(
    write_yaml: Callable[..., Path],
) -> None:
    path = write_yaml("queues: [{name: jobs}, {name: jobs.dlq}]\nexchanges: [{name: amqpq.dlx}]\n")
    with pytest.raises(TopologyError) as caught:
        load_topology(path, {})
    assert caught.value.problems == [
        f"{path}:1: queues[1].name: 'jobs.dlq' is a queue amqpq adds itself; rename it, give its "
        "work queue its own dead-letter exchange, or change infrastructure.prefix",
        f"{path}:2: exchanges[0].name: 'amqpq.dlx' is an exchange amqpq adds itself; rename it "
        "or change infrastructure.prefix",
    ]


def delay_headers(delay_ms: int, **extra: str) -> dict[str, str]:
    headers = {f"amqpq-delay-bit-{level}": str((delay_ms >> level) & 1) for level in range(30)}
    return {**headers, **extra}


def test_delay_levels_route_by_bit_and_deliver_to_the_exchange_or_queue(
    example: Topology,
) -> None:
    effective = effective_topology(example)
    # 5 ms = 0b101: enter level 2 -> wait in queue amqpq.delay.2
    assert route_targets(effective, "amqpq.delay.2", "high", delay_headers(5)) == {"amqpq.delay.2"}
    # After level 2 expires it dead-letters to level 1, whose bit is 0: straight to level 0.
    assert route_targets(effective, "amqpq.delay.1", "high", delay_headers(5)) == {"amqpq.delay.0"}
    # Out of level 0: deliver to the route's exchange (countdown) ...
    headers = delay_headers(4, **{"amqpq-delay-exchange": "tasks"})
    assert route_targets(effective, "amqpq.delay.0", "high", headers) == {"high_priority"}
    # ... or straight back to one queue (retry), never fanned out again.
    headers = delay_headers(4, **{"amqpq-delay-queue": "audit_a"})
    assert route_targets(effective, "amqpq.delay.deliver", "", headers) == {"audit_a"}


def snapshot_of(topology: Topology) -> BrokerSnapshot:
    """What a broker would hold after applying the topology."""
    return BrokerSnapshot(
        exchanges=tuple(
            BrokerExchange(
                name=x.name,
                type=x.type,
                durable=x.durable,
                auto_delete=x.auto_delete,
                internal=x.internal,
                arguments=x.declare_arguments,
            )
            for x in topology.exchanges
        ),
        queues=tuple(
            BrokerQueue(
                name=q.name,
                type=q.type,
                durable=q.durable,
                auto_delete=q.auto_delete,
                arguments={k: v for k, v in q.declare_arguments.items() if k != "x-queue-type"},
            )
            for q in topology.queues
        ),
        bindings=tuple(topology.bindings()),
    )


def test_plan_against_an_empty_broker_creates_everything(example: Topology) -> None:
    effective = effective_topology(example)
    plan = plan_topology(effective, BrokerSnapshot())
    counts = plan.counts()
    assert counts["create"] == len(effective.exchanges) + len(effective.queues) + len(
        effective.bindings()
    )
    assert not plan.has_conflicts
    assert plan.items[0].line() == "+ exchange tasks (direct)"


def test_plan_after_apply_is_all_unchanged(example: Topology) -> None:
    effective = effective_topology(example)
    plan = plan_topology(effective, snapshot_of(effective))
    assert {item.action for item in plan.items} == {"unchanged"}


def test_plan_reports_conflicts_only_on_what_rabbitmq_compares(example: Topology) -> None:
    effective = effective_topology(example)
    broker = snapshot_of(effective)
    changed_queues = tuple(
        q.model_copy(update={"arguments": {**q.arguments, "x-max-length": 10, "x-custom": 1}})
        if q.name == "pdf"
        else q.model_copy(update={"type": "classic"})
        if q.name == "default"
        else q
        for q in broker.queues
    )
    changed_exchanges = tuple(
        x.model_copy(update={"type": "fanout"}) if x.name == "tasks" else x
        for x in broker.exchanges
    )
    plan = plan_topology(
        effective,
        broker.model_copy(update={"queues": changed_queues, "exchanges": changed_exchanges}),
    )
    assert [item.line() for item in plan.conflicts] == [
        "! exchange tasks (direct): type: file direct, broker fanout",
        "! queue default (quorum): type: file quorum, broker classic (RabbitMQ cannot change "
        "a queue's type: delete the queue (after moving its messages) and apply again, or "
        "write the broker's type in the file)",
        "! queue pdf (classic): argument x-max-length: file 100000, broker 10",
    ]
    pdf = next(item for item in plan.conflicts if item.name.startswith("pdf"))
    assert all("x-custom" not in detail for detail in pdf.details)


def test_plan_lists_what_is_only_on_the_broker_but_not_builtins(example: Topology) -> None:
    effective = effective_topology(example)
    broker = snapshot_from_management(
        "/",
        exchanges=[
            {"name": "", "type": "direct"},
            {"name": "amq.topic", "type": "topic"},
            {"name": "legacy", "type": "fanout"},
        ],
        queues=[
            {"name": "old_jobs", "type": "classic", "arguments": {}},
            {"name": "amq.gen-abc", "type": "classic", "exclusive": True},
            {"name": "reply", "type": "classic", "exclusive": True},
            # a running chord's queue (docs/workflows.md): transient, never "only on broker"
            {"name": "amqpq.chord.5f0c", "type": "classic", "arguments": {"x-expires": 1000}},
        ],
        bindings=[
            {
                "source": "",
                "destination": "old_jobs",
                "destination_type": "queue",
                "routing_key": "old_jobs",
                "arguments": {},
            },
            {
                "source": "legacy",
                "destination": "old_jobs",
                "destination_type": "queue",
                "routing_key": "",
                "arguments": {},
            },
            {
                "source": "amq.topic",
                "destination": "pdf",
                "destination_type": "queue",
                "routing_key": "#",
                "arguments": {},
            },
        ],
    )
    extra = [item.line() for item in plan_topology(effective, broker).by_action("only_on_broker")]
    assert extra == [
        "- exchange legacy (fanout)",
        "- queue old_jobs (classic)",
        "- binding amq.topic -> queue pdf (key '#')",
    ]


def test_snapshot_normalises_the_queue_type_argument() -> None:
    snapshot = snapshot_from_management(
        "/",
        exchanges=[],
        queues=[{"name": "q", "type": "quorum", "arguments": {"x-queue-type": "quorum"}}],
        bindings=[],
    )
    assert snapshot.queues[0].type == "quorum"
    assert snapshot.queues[0].arguments == {}


def test_definitions_hold_every_object_and_binding(example: Topology) -> None:
    effective = effective_topology(example)
    definitions = topology_definitions(effective)
    assert set(definitions) == {"exchanges", "queues", "bindings"}
    assert len(definitions["exchanges"]) == len(effective.exchanges)
    assert len(definitions["queues"]) == len(effective.queues)
    assert len(definitions["bindings"]) == len(effective.bindings())
    default = next(q for q in definitions["queues"] if q["name"] == "default")
    assert default["arguments"]["x-queue-type"] == "quorum"
    assert "vhost" not in default
    e2e = [b for b in definitions["bindings"] if b["destination_type"] == "exchange"]
    assert {"source": "amqpq.delay.deliver", "destination": "tasks"}.items() <= next(
        b for b in e2e if b["destination"] == "tasks"
    ).items()
    with_vhost = topology_definitions(effective, vhost="prod")
    assert with_vhost["vhosts"] == [{"name": "prod"}]
    assert all(q["vhost"] == "prod" for q in with_vhost["queues"])


def test_graph_draws_routes_exchanges_queues_and_collapses_infrastructure(
    example: Topology,
) -> None:
    mermaid = render_graph(example)
    assert mermaid.startswith("flowchart LR\n")
    assert '(["reports.*"])' in mermaid
    assert '{{"reports (headers)"}}' in mermaid
    assert '[("pdf (classic)")]' in mermaid
    assert '|"all: format=pdf"|' in mermaid
    assert "delay levels \N{MULTIPLICATION SIGN}30" in mermaid
    assert "amqpq.delay.17" not in mermaid
    everything = render_graph(example, show_all=True)
    assert "amqpq.delay.17 (headers)" in everything
    dot = render_graph(example, "dot")
    assert dot.startswith("digraph amqpq {")
    assert dot.rstrip().endswith("}")
    assert 'label="user.*"' in dot


@pytest.mark.parametrize("ms", [1, 6, 1000, 86_400_000])
def test_the_declared_delay_levels_route_what_the_sender_plans(example: Topology, ms: int) -> None:
    # Sender (amqpq.delay) and declarer (topology/infra.py) share the protocol of amqpq.wire:
    # a planned message enters at its highest set bit and waits in that level's queue.
    plan = plan_delay(ms, target_queue="pdf")
    router = Router(effective_topology(example))

    assert router.targets(plan.exchange, "pdf", plan.headers) == {
        delay_queue_name("amqpq", ms.bit_length() - 1)
    }
