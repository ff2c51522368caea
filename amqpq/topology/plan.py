"""The plan: what ``apply`` would create, what already matches, what conflicts. Pure.

A :class:`BrokerSnapshot` is what the broker holds (built from the management
API by :mod:`amqpq.transport.management`); :func:`plan_topology` compares it with
the effective topology the way RabbitMQ compares a redeclare: exchange type,
flags and ``alternate-exchange``; queue type, flags and the arguments its queue
type fixes at declare time (see :mod:`amqpq.topology.arguments`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from amqpq.topology.arguments import EXCHANGE_COMPARED_ARGUMENTS, QUEUE_ARGUMENTS_BY_TYPE
from amqpq.topology.models import Binding, Exchange, Queue, Topology
from amqpq.wire import DELAY_LEVELS, chord_queue_name, delay_queue_name

__all__ = [
    "SYMBOLS",
    "Action",
    "BrokerExchange",
    "BrokerQueue",
    "BrokerSnapshot",
    "Plan",
    "PlanItem",
    "delay_queue_names",
    "describe_binding",
    "plan_topology",
    "queue_type_remedy",
    "snapshot_from_management",
]

Action = Literal["create", "unchanged", "conflict", "only_on_broker", "skip"]
Kind = Literal["exchange", "queue", "binding"]
SYMBOLS: dict[Action, str] = {
    "create": "+",
    "unchanged": "=",
    "conflict": "!",
    "only_on_broker": "-",
    "skip": "~",
}


class _Frozen(BaseModel):
    # Built on first use: a worker imports this module (for describe_binding) but never
    # reads a broker snapshot, and building these schemas would lengthen its start.
    model_config = ConfigDict(frozen=True, defer_build=True)


class BrokerExchange(_Frozen):
    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = Field(default_factory=dict)


class BrokerQueue(_Frozen):
    name: str
    type: str = "classic"
    durable: bool = True
    auto_delete: bool = False
    exclusive: bool = False
    arguments: dict[str, Any] = Field(default_factory=dict)


class BrokerSnapshot(_Frozen):
    """The exchanges, queues and bindings of one vhost."""

    vhost: str = "/"
    exchanges: tuple[BrokerExchange, ...] = ()
    queues: tuple[BrokerQueue, ...] = ()
    bindings: tuple[Binding, ...] = ()


def snapshot_from_management(
    vhost: str,
    exchanges: Iterable[Mapping[str, Any]],
    queues: Iterable[Mapping[str, Any]],
    bindings: Iterable[Mapping[str, Any]],
) -> BrokerSnapshot:
    """Build a snapshot from the JSON of ``/api/{exchanges,queues,bindings}/{vhost}``."""
    broker_queues = []
    for queue in queues:
        arguments = dict(queue.get("arguments") or {})
        # The broker reports the type twice (field and argument); the argument is absent
        # for classic queues declared without one, which RabbitMQ treats as equivalent.
        queue_type = arguments.pop("x-queue-type", None) or queue.get("type") or "classic"
        broker_queues.append(
            BrokerQueue(
                name=queue["name"],
                type=str(queue_type),
                durable=bool(queue.get("durable", True)),
                auto_delete=bool(queue.get("auto_delete", False)),
                exclusive=bool(queue.get("exclusive", False) or queue.get("owner_pid_details")),
                arguments=arguments,
            )
        )
    return BrokerSnapshot(
        vhost=vhost,
        exchanges=tuple(
            BrokerExchange(
                name=x["name"],
                type=x["type"],
                durable=bool(x.get("durable", True)),
                auto_delete=bool(x.get("auto_delete", False)),
                internal=bool(x.get("internal", False)),
                arguments=dict(x.get("arguments") or {}),
            )
            for x in exchanges
        ),
        queues=tuple(broker_queues),
        bindings=tuple(
            Binding(
                source=b["source"],
                destination=b["destination"],
                destination_type="exchange" if b.get("destination_type") == "exchange" else "queue",
                routing_key=b.get("routing_key", ""),
                arguments=dict(b.get("arguments") or {}),
            )
            for b in bindings
        ),
    )


@dataclass(frozen=True)
class PlanItem:
    action: Action
    kind: Kind
    name: str
    managed_by_amqpq: bool = False
    details: tuple[str, ...] = ()

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.action]

    def line(self) -> str:
        """``+ queue default (quorum)``, with any details after a colon."""
        text = f"{self.symbol} {self.kind} {self.name}"
        return f"{text}: {'; '.join(self.details)}" if self.details else text


@dataclass(frozen=True)
class Plan:
    items: tuple[PlanItem, ...] = field(default_factory=tuple)

    def by_action(self, action: Action) -> list[PlanItem]:
        return [item for item in self.items if item.action == action]

    @property
    def conflicts(self) -> list[PlanItem]:
        return self.by_action("conflict")

    @property
    def has_conflicts(self) -> bool:
        return any(item.action == "conflict" for item in self.items)

    def counts(self) -> dict[Action, int]:
        counts: dict[Action, int] = dict.fromkeys(SYMBOLS, 0)
        for item in self.items:
            counts[item.action] += 1
        return counts

    def summary(self) -> str:
        c = self.counts()
        text = (
            f"{c['create']} to create, {c['unchanged']} unchanged, {c['conflict']} conflicting, "
            f"{c['only_on_broker']} only on the broker"
        )
        return text + (f", {c['skip']} skipped" if c["skip"] else "")


def _same(a: Any, b: Any) -> bool:
    # RabbitMQ compares argument values by type class: any integer equals any integer.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return bool(a == b)


def _show(value: Any) -> str:
    return "none" if value is None else repr(value)


def _argument_differences(
    wanted: Mapping[str, Any], present: Mapping[str, Any], compared: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(conflicts on compared keys, notes on keys RabbitMQ stores but never compares)."""
    compared = set(compared)
    conflicts: list[str] = []
    notes: list[str] = []
    for key in sorted(set(wanted) | set(present)):
        a, b = wanted.get(key), present.get(key)
        if a is not None and b is not None and _same(a, b):
            continue
        text = f"argument {key}: file {_show(a)}, broker {_show(b)}"
        if key in compared:
            conflicts.append(text)
        else:
            notes.append(text + " (not compared by RabbitMQ; delete the object to change it)")
    return conflicts, notes


def _flags(obj: Any, other: Any, names: Iterable[str]) -> list[str]:
    return [
        f"{name}: file {getattr(obj, name)}, broker {getattr(other, name)}"
        for name in names
        if getattr(obj, name) != getattr(other, name)
    ]


def _exchange_item(exchange: Exchange, present: BrokerExchange | None) -> PlanItem:
    name = f"{exchange.name} ({exchange.type})"
    managed = exchange.managed_by_amqpq
    if present is None:
        return PlanItem("create", "exchange", name, managed)
    problems = []
    if present.type != exchange.type:
        problems.append(f"type: file {exchange.type}, broker {present.type}")
    problems += _flags(exchange, present, ("durable", "auto_delete", "internal"))
    conflicts, notes = _argument_differences(
        exchange.declare_arguments, present.arguments, EXCHANGE_COMPARED_ARGUMENTS
    )
    problems += conflicts
    if problems:
        return PlanItem("conflict", "exchange", name, managed, tuple(problems))
    return PlanItem("unchanged", "exchange", name, managed, tuple(notes))


def delay_queue_names(topology: Topology) -> set[str]:
    """The delay level queues the topology's infrastructure adds (none with ``delay: false``)."""
    infra = topology.infrastructure
    if not infra.delay:
        return set()
    return {delay_queue_name(infra.prefix, level) for level in range(DELAY_LEVELS)}


def queue_type_remedy(topology: Topology, queue: str) -> str:
    """What to do about a queue whose type on the broker is not the file's."""
    infra = topology.infrastructure
    if queue in delay_queue_names(topology):
        other = "classic" if infra.delay_queue_type == "quorum" else "quorum"
        return (
            f"RabbitMQ cannot change a queue's type: keep the delay levels {other} with "
            f"infrastructure.delay_queue_type: {other}, or move them (docs/delays.md, "
            '"Queue type of the delay levels")'
        )
    return (
        "RabbitMQ cannot change a queue's type: delete the queue (after moving its "
        "messages) and apply again, or write the broker's type in the file"
    )


def _queue_item(queue: Queue, present: BrokerQueue | None, topology: Topology) -> PlanItem:
    name = f"{queue.name} ({queue.type})"
    managed = queue.managed_by_amqpq
    if queue.exclusive:
        return PlanItem(
            "skip", "queue", name, managed, ("exclusive: declared by the connection that owns it",)
        )
    if present is None:
        return PlanItem("create", "queue", name, managed)
    if present.type != queue.type:
        # Arguments are compared per type: beside a type mismatch they would only add noise.
        problems = [
            f"type: file {queue.type}, broker {present.type} "
            f"({queue_type_remedy(topology, queue.name)})",
            *_flags(queue, present, ("durable", "auto_delete")),
        ]
        return PlanItem("conflict", "queue", name, managed, tuple(problems))
    problems = _flags(queue, present, ("durable", "auto_delete"))
    wanted = {k: v for k, v in queue.declare_arguments.items() if k != "x-queue-type"}
    compared = QUEUE_ARGUMENTS_BY_TYPE[queue.type]
    conflicts, notes = _argument_differences(wanted, present.arguments, compared)
    problems += conflicts
    if problems:
        return PlanItem("conflict", "queue", name, managed, tuple(problems))
    return PlanItem("unchanged", "queue", name, managed, tuple(notes))


def describe_binding(binding: Binding) -> str:
    """``tasks -> queue default (key 'default')`` or ``reports -> queue pdf (x-match=all, ...)``."""
    match = []
    if binding.routing_key:
        match.append(f"key {binding.routing_key!r}")
    match += [f"{k}={v}" for k, v in binding.arguments.items()]
    text = f"{binding.source} -> {binding.destination_type} {binding.destination}"
    return f"{text} ({', '.join(match)})" if match else text


def plan_topology(topology: Topology, snapshot: BrokerSnapshot) -> Plan:
    """Compare an effective topology (see :func:`~amqpq.topology.infra.effective_topology`)
    with what the broker holds."""
    items: list[PlanItem] = []
    broker_exchanges = {x.name: x for x in snapshot.exchanges}
    broker_queues = {q.name: q for q in snapshot.queues}
    items += [_exchange_item(x, broker_exchanges.get(x.name)) for x in topology.exchanges]
    items += [_queue_item(q, broker_queues.get(q.name), topology) for q in topology.queues]

    skipped_queues = {q.name for q in topology.queues if q.exclusive}
    present_bindings = {b.identity for b in snapshot.bindings}
    wanted_bindings = {b.identity for b in topology.bindings()}
    for binding in topology.bindings():
        if binding.destination_type == "queue" and binding.destination in skipped_queues:
            continue
        action: Action = "unchanged" if binding.identity in present_bindings else "create"
        items.append(
            PlanItem(action, "binding", describe_binding(binding), binding.managed_by_amqpq)
        )

    # What the broker has and the file does not. Built-in (amq.*, the default exchange),
    # server-named and exclusive objects belong to RabbitMQ or to live connections.
    file_exchanges = {x.name for x in topology.exchanges}
    file_queues = {q.name for q in topology.queues}
    extra_exchanges = {
        x.name
        for x in snapshot.exchanges
        if x.name and not x.name.startswith("amq.") and x.name not in file_exchanges
    }
    # A chord's queue lives while its workflow runs (and then expires by itself).
    chords = chord_queue_name(topology.infrastructure.prefix, "")
    ignored_queues = {
        q.name
        for q in snapshot.queues
        if q.exclusive or q.name.startswith("amq.") or q.name.startswith(chords)
    }
    extra_queues = {q.name for q in snapshot.queues if q.name not in file_queues | ignored_queues}
    items += [
        PlanItem("only_on_broker", "exchange", f"{x.name} ({x.type})")
        for x in snapshot.exchanges
        if x.name in extra_exchanges
    ]
    items += [
        PlanItem("only_on_broker", "queue", f"{q.name} ({q.type})")
        for q in snapshot.queues
        if q.name in extra_queues
    ]
    for binding in snapshot.bindings:
        if not binding.source or binding.identity in wanted_bindings:
            continue
        if (
            binding.source in extra_exchanges
            or binding.destination in extra_queues | extra_exchanges
        ):
            continue  # shown with the object it belongs to
        if binding.destination_type == "queue" and binding.destination in ignored_queues:
            continue
        items.append(PlanItem("only_on_broker", "binding", describe_binding(binding)))
    return Plan(tuple(items))
