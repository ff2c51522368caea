"""Offline checks: what RabbitMQ would refuse, and routes that would lead nowhere.

Every check returns :class:`Problem` records carrying the path of the offending
field; the loader turns the path into ``FILE:LINE: path: message``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from amqpq.topology.arguments import check_queue_argument
from amqpq.topology.models import Topology
from amqpq.topology.routing import BUILTIN_EXCHANGES, HEADERS_MATCH_KINDS, Router

__all__ = ["Loc", "Problem", "check_topology", "format_path"]

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file: where (a field path) and what was expected."""

    loc: Loc
    message: str

    def describe(self) -> str:
        return f"{format_path(self.loc)}: {self.message}" if self.loc else self.message


def format_path(loc: Loc) -> str:
    """``queues[2].bindings[0].exchange``; keys that are not plain words are quoted."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]'
    return text


def check_topology(topology: Topology) -> list[Problem]:
    """Every problem the broker or a publish would hit, in file order."""
    return [
        *_check_exchanges(topology),
        *_check_queues(topology),
        *_check_routes(topology),
        *_check_schedules(topology),
    ]


def _known_exchange_type(topology: Topology, name: str) -> str | None:
    exchange = topology.exchange(name)
    return exchange.type if exchange else BUILTIN_EXCHANGES.get(name)


def _undeclared(name: str) -> str:
    return (
        f"exchange {name!r} is not declared under exchanges: "
        "(built-in amq.* exchanges may be used without declaring them)"
    )


def _check_binding_arguments(
    topology: Topology, source: str, arguments: dict[str, object], loc: Loc
) -> Iterator[Problem]:
    if _known_exchange_type(topology, source) != "headers":
        return
    kind = arguments.get("x-match", "all")
    if kind not in HEADERS_MATCH_KINDS:
        yield Problem(
            (*loc, "arguments", "x-match"),
            f"expected one of {', '.join(HEADERS_MATCH_KINDS)}, got {kind!r}",
        )


def _check_exchanges(topology: Topology) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, exchange in enumerate(topology.exchanges):
        loc: Loc = ("exchanges", i)
        if exchange.name in seen:
            yield Problem((*loc, "name"), f"exchange {exchange.name!r} is declared twice")
        seen.add(exchange.name)
        if exchange.name.startswith("amq.") and not exchange.managed_by_amqpq:
            yield Problem(
                (*loc, "name"),
                "names starting with 'amq.' are reserved by RabbitMQ; bind to the built-in "
                "amq.* exchanges without declaring them",
            )
        alternate = exchange.alternate
        if alternate and _known_exchange_type(topology, alternate) is None:
            where = "alternate_exchange" if exchange.alternate_exchange else "arguments"
            yield Problem((*loc, where), _undeclared(alternate))
        for j, binding in enumerate(exchange.bindings):
            bloc: Loc = (*loc, "bindings", j)
            if _known_exchange_type(topology, binding.exchange) is None:
                yield Problem((*bloc, "exchange"), _undeclared(binding.exchange))
            yield from _check_binding_arguments(topology, binding.exchange, binding.arguments, bloc)


def _check_queues(topology: Topology) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, queue in enumerate(topology.queues):
        loc: Loc = ("queues", i)
        if queue.name in seen:
            yield Problem((*loc, "name"), f"queue {queue.name!r} is declared twice")
        seen.add(queue.name)
        if queue.name.startswith("amq."):
            yield Problem((*loc, "name"), "names starting with 'amq.' are reserved by RabbitMQ")
        if queue.type != "classic":
            # Replicated queues live on disk on several nodes and outlive any connection.
            if not queue.durable:
                yield Problem((*loc, "durable"), f"{queue.type} queues are always durable")
            if queue.exclusive:
                yield Problem((*loc, "exclusive"), f"{queue.type} queues cannot be exclusive")
            if queue.auto_delete:
                yield Problem((*loc, "auto_delete"), f"{queue.type} queues cannot be auto-delete")
        arguments = queue.declare_arguments
        for key, value in arguments.items():
            message = check_queue_argument(queue.type, key, value)
            if message:
                yield Problem((*loc, *queue.argument_location(key)), message)
        if "x-dead-letter-routing-key" in arguments and "x-dead-letter-exchange" not in arguments:
            yield Problem(
                (*loc, *queue.argument_location("x-dead-letter-routing-key")),
                "a dead-letter routing key needs a dead-letter exchange as well",
            )
        for j, binding in enumerate(queue.bindings):
            bloc: Loc = (*loc, "bindings", j)
            if _known_exchange_type(topology, binding.exchange) is None:
                yield Problem((*bloc, "exchange"), _undeclared(binding.exchange))
            yield from _check_binding_arguments(topology, binding.exchange, binding.arguments, bloc)


def _check_routes(topology: Topology) -> Iterator[Problem]:
    router = Router(topology)
    for pattern, route in topology.routes.items():
        loc: Loc = ("routes", pattern)
        if not pattern.strip():
            yield Problem(loc, "expected a task name or glob, got an empty key")
        exchange = topology.exchange(route.exchange)
        if exchange is None and route.exchange not in BUILTIN_EXCHANGES:
            yield Problem((*loc, "exchange"), _undeclared(route.exchange))
            continue
        if exchange is not None and exchange.internal:
            yield Problem(
                (*loc, "exchange"),
                f"exchange {route.exchange!r} is internal: RabbitMQ refuses direct publishes",
            )
            continue
        if not router.targets(route.exchange, route.routing_key, route.headers):
            sent = f"routing key {route.routing_key!r}"
            if route.headers:
                sent += f" and headers {route.headers}"
            yield Problem(
                loc,
                f"a message to exchange {route.exchange!r} with {sent} reaches no queue; "
                "bind a queue that matches it",
            )


def _check_schedules(topology: Topology) -> Iterator[Problem]:
    for name, schedule in topology.schedules.items():
        if topology.route_pattern_for(schedule.task) is None:
            yield Problem(
                ("schedules", name, "task"),
                f"no entry under routes: matches task {schedule.task!r} (add it or a default '*')",
            )
