"""RabbitMQ's routing rules as pure functions: which queues a publish reaches.

The rules mirror the broker (rabbit_exchange and its exchange type modules):

- direct: the binding key equals the routing key;
- topic: dot-separated words, ``*`` is exactly one word, ``#`` zero or more;
- fanout: every binding;
- headers: ``x-match`` all (default) | any | all-with-x | any-with-x over the
  binding arguments; arguments starting with ``x-`` take no part unless the
  ``-with-x`` form is used; a binding argument without a value (YAML ``null``)
  only asks for the header to be present; values compare like Erlang terms
  (``1`` equals ``1.0``, but ``"1"`` is not ``1`` and ``true`` is not ``1``).

Exchange-to-exchange bindings are followed; an exchange whose own bindings match
nothing hands the message to its alternate exchange. Each exchange is visited at
most once per publish, so cycles end as they do on the broker.

The offline checks, the in-memory test broker and ``graph`` share this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from amqpq.topology.models import Binding, Topology

__all__ = [
    "BUILTIN_EXCHANGES",
    "HEADERS_MATCH_KINDS",
    "Router",
    "binding_matches",
    "headers_match",
    "route_targets",
    "topic_matches",
]

# Exchanges every vhost has; files may bind to them without declaring them.
BUILTIN_EXCHANGES: dict[str, str] = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}
HEADERS_MATCH_KINDS = ("all", "any", "all-with-x", "any-with-x")


def topic_matches(binding_key: str, routing_key: str) -> bool:
    """True when a topic binding key (``*`` one word, ``#`` zero or more) matches the key.

    As on the broker, the empty string has zero words (so ``#`` matches it and
    ``*`` does not) and empty words between dots count (``a..b`` has three words).
    """
    pattern = binding_key.split(".") if binding_key else []
    words = routing_key.split(".") if routing_key else []
    # reachable[j]: the pattern prefix consumed so far can end just before word j.
    reachable = [True] + [False] * len(words)
    for part in pattern:
        if part == "#":
            # '#' keeps every reachable position and extends it over any number of words.
            for j in range(1, len(words) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [
                reachable[j] and (part == "*" or part == words[j]) for j in range(len(words))
            ]
        if not any(reachable):
            return False
    return reachable[len(words)]


def _same_value(expected: Any, actual: Any) -> bool:
    # AMQP tables carry typed values; Python's True == 1 must not match an integer.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    if isinstance(expected, bytes):
        expected = expected.decode("utf-8", "replace")
    if isinstance(actual, bytes):
        actual = actual.decode("utf-8", "replace")
    return type(expected) is type(actual) and bool(expected == actual)


def headers_match(binding_arguments: Mapping[str, Any], headers: Mapping[str, Any]) -> bool:
    """True when a headers-exchange binding matches the message headers."""
    kind = binding_arguments.get("x-match", "all")
    if isinstance(kind, bytes):
        kind = kind.decode()
    if kind not in HEADERS_MATCH_KINDS:
        # The broker refuses such a binding; a binding that cannot exist matches nothing.
        return False
    with_x = kind.endswith("-with-x")
    wanted = {
        key: value
        for key, value in binding_arguments.items()
        if key != "x-match" and (with_x or not key.startswith("x-"))
    }
    results = (
        key in headers and (value is None or _same_value(value, headers[key]))
        for key, value in wanted.items()
    )
    if kind.startswith("all"):
        return all(results)
    return any(results)


def binding_matches(
    exchange_type: str,
    binding_key: str,
    binding_arguments: Mapping[str, Any],
    routing_key: str,
    headers: Mapping[str, Any],
) -> bool:
    """True when one binding of an exchange of this type takes the message."""
    if exchange_type == "direct":
        return binding_key == routing_key
    if exchange_type == "topic":
        return topic_matches(binding_key, routing_key)
    if exchange_type == "fanout":
        return True
    if exchange_type == "headers":
        return headers_match(binding_arguments, headers)
    return False


class Router:
    """A topology indexed for routing; build once, ask many times (e.g. per publish)."""

    def __init__(self, topology: Topology) -> None:
        self._types: dict[str, str] = dict(BUILTIN_EXCHANGES)
        self._alternates: dict[str, str] = {}
        for exchange in topology.exchanges:
            self._types[exchange.name] = exchange.type
            if exchange.alternate:
                self._alternates[exchange.name] = exchange.alternate
        self._queues = {queue.name for queue in topology.queues}
        self._by_source: dict[str, list[Binding]] = {}
        for binding in topology.bindings():
            self._by_source.setdefault(binding.source, []).append(binding)

    def targets(
        self, exchange: str, routing_key: str = "", headers: Mapping[str, Any] | None = None
    ) -> set[str]:
        """The names of the queues a publish to ``exchange`` reaches (empty: unroutable)."""
        headers = headers or {}
        if exchange == "":
            # The default exchange: every queue is bound under its own name.
            return {routing_key} if routing_key in self._queues else set()
        queues: set[str] = set()
        seen = {exchange}
        pending = [exchange]
        while pending:
            current = pending.pop(0)
            exchange_type = self._types.get(current)
            if exchange_type is None:  # not declared: the broker would drop it here
                continue
            matched = [
                b
                for b in self._by_source.get(current, ())
                if binding_matches(exchange_type, b.routing_key, b.arguments, routing_key, headers)
            ]
            destinations: Iterable[tuple[str, str]] = [
                (b.destination_type, b.destination) for b in matched
            ]
            if not matched and current in self._alternates:
                destinations = [("exchange", self._alternates[current])]
            for kind, name in destinations:
                if kind == "queue":
                    if name in self._queues:
                        queues.add(name)
                elif name not in seen:
                    seen.add(name)
                    pending.append(name)
        return queues

    def exchange_type(self, name: str) -> str | None:
        return self._types.get(name)


def route_targets(
    topology: Topology,
    exchange: str,
    routing_key: str = "",
    headers: Mapping[str, Any] | None = None,
) -> set[str]:
    """The queues a message published to ``exchange`` with this key and headers reaches."""
    return Router(topology).targets(exchange, routing_key, headers)
