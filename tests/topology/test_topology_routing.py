"""The routing matcher follows RabbitMQ's rules for all four exchange types."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from amqpq.topology.loader import load_topology_text
from amqpq.topology.models import Topology
from amqpq.topology.routing import headers_match, route_targets, topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("user.*", "user.signup", True),
        ("user.*", "user", False),
        ("user.*", "user.signup.eu", False),
        ("user.#", "user", True),
        ("user.#", "user.signup.eu", True),
        ("#", "", True),
        ("#", "anything.at.all", True),
        ("*", "", False),
        ("*", "one", True),
        ("", "", True),
        ("", "a", False),
        ("#.eu", "eu", True),
        ("#.eu", "user.signup.eu", True),
        ("#.eu", "user.signup.us", False),
        ("*.*.eu", "user.signup.eu", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y.c", False),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
        ("#.#", "a.b", True),
        ("a..b", "a..b", True),
        ("a.*.b", "a..b", True),
        ("a.", "a.", True),
        ("a.", "a", False),
        ("user.signup", "user.signup", True),
        ("User.signup", "user.signup", False),
    ],
)
def test_topic_binding_keys_match_like_rabbitmq(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


@pytest.mark.parametrize(
    ("binding", "headers", "expected"),
    [
        ({"x-match": "all", "format": "pdf"}, {"format": "pdf"}, True),
        ({"x-match": "all", "format": "pdf"}, {"format": "pdf", "other": 1}, True),
        ({"x-match": "all", "format": "pdf", "size": "a4"}, {"format": "pdf"}, False),
        ({"format": "pdf"}, {"format": "pdf"}, True),  # all is the default
        ({"x-match": "any", "format": "pdf", "size": "a4"}, {"size": "a4"}, True),
        ({"x-match": "any", "format": "pdf"}, {"size": "a4"}, False),
        ({"x-match": "any"}, {"size": "a4"}, False),  # any of nothing: no match
        ({"x-match": "all"}, {}, True),  # all of nothing: everything matches
        ({"x-match": "all", "n": 1}, {"n": 1}, True),
        ({"x-match": "all", "n": 1}, {"n": 1.0}, True),  # numbers compare by value
        ({"x-match": "all", "n": 1}, {"n": "1"}, False),  # strings are not numbers
        ({"x-match": "all", "n": 1}, {"n": True}, False),  # booleans are not numbers
        ({"x-match": "all", "flag": True}, {"flag": True}, True),
        ({"x-match": "all", "seen": None}, {"seen": "anything"}, True),  # presence only
        ({"x-match": "all", "seen": None}, {}, False),
        # x- binding arguments take no part in all/any ...
        ({"x-match": "all", "x-tenant": "a", "k": "v"}, {"k": "v"}, True),
        ({"x-match": "any", "x-tenant": "a"}, {"x-tenant": "a"}, False),
        # ... but do in all-with-x/any-with-x.
        ({"x-match": "all-with-x", "x-tenant": "a", "k": "v"}, {"k": "v"}, False),
        ({"x-match": "all-with-x", "x-tenant": "a", "k": "v"}, {"k": "v", "x-tenant": "a"}, True),
        ({"x-match": "any-with-x", "x-tenant": "a"}, {"x-tenant": "a"}, True),
        ({"x-match": "bogus", "k": "v"}, {"k": "v"}, False),
    ],
)
def test_headers_bindings_match_like_rabbitmq(
    binding: dict[str, Any], headers: dict[str, Any], expected: bool
) -> None:
    assert headers_match(binding, headers) is expected


ROUTING = """
exchanges:
  - {name: tasks, type: direct, alternate_exchange: unrouted}
  - {name: events, type: topic}
  - {name: broadcast, type: fanout}
  - {name: reports, type: headers}
  - {name: unrouted, type: fanout}
  - name: mirror
    type: fanout
    bindings: [{exchange: events, routing_key: "order.#"}]
  - name: loop_a
    type: fanout
    bindings: [{exchange: loop_b}]
  - name: loop_b
    type: fanout
    bindings: [{exchange: loop_a}]
queues:
  - {name: high, bindings: [{exchange: tasks, routing_key: high}]}
  - {name: low, bindings: [{exchange: tasks, routing_key: low}, {exchange: events, routing_key: "*.low"}]}
  - {name: orders, bindings: [{exchange: events, routing_key: "order.*"}]}
  - {name: mirrored, bindings: [{exchange: mirror}]}
  - {name: fan_a, bindings: [{exchange: broadcast}]}
  - {name: fan_b, bindings: [{exchange: broadcast}]}
  - {name: lost, bindings: [{exchange: unrouted}]}
  - name: pdf
    bindings: [{exchange: reports, arguments: {x-match: all, format: pdf, size: a4}}]
  - name: any_doc
    bindings: [{exchange: reports, arguments: {x-match: any, format: pdf, format2: doc}}]
  - {name: looped, bindings: [{exchange: loop_b}]}
routes:
  "*": {exchange: tasks, routing_key: high}
infrastructure: {dead_letters: false, delay: false}
"""


@pytest.fixture(scope="module")
def routing_topology() -> Topology:
    return load_topology_text(textwrap.dedent(ROUTING), "routing.yaml", {})


@pytest.mark.parametrize(
    ("exchange", "key", "headers", "expected"),
    [
        ("tasks", "high", {}, {"high"}),
        ("tasks", "low", {}, {"low"}),
        # Unroutable on tasks: its alternate exchange takes the message.
        ("tasks", "nobody", {}, {"lost"}),
        ("events", "order.created", {}, {"orders", "mirrored"}),
        ("events", "order.created.eu", {}, {"mirrored"}),
        ("events", "stock.low", {}, {"low"}),
        ("events", "nothing", {}, set()),
        ("broadcast", "whatever", {}, {"fan_a", "fan_b"}),
        ("reports", "", {"format": "pdf", "size": "a4"}, {"pdf", "any_doc"}),
        ("reports", "", {"format": "pdf"}, {"any_doc"}),
        ("reports", "", {"format2": "doc"}, {"any_doc"}),
        ("reports", "", {}, set()),
        ("loop_a", "", {}, {"looped"}),  # a cycle of e2e bindings ends
        ("nowhere", "high", {}, set()),  # an undeclared exchange routes nothing
        ("", "orders", {}, {"orders"}),  # the default exchange routes by queue name
        ("", "nope", {}, set()),
    ],
)
def test_route_targets_follow_bindings_e2e_and_alternate_exchanges(
    routing_topology: Topology,
    exchange: str,
    key: str,
    headers: dict[str, Any],
    expected: set[str],
) -> None:
    assert route_targets(routing_topology, exchange, key, headers) == expected


def test_the_alternate_exchange_is_not_used_when_a_binding_matched(
    parse: Callable[[str], Topology],
) -> None:
    # Given a topic exchange whose only match is an e2e binding to an exchange without queues
    t = parse(
        """
        exchanges:
          - {name: src, type: topic, alternate_exchange: ae}
          - {name: empty, type: fanout, bindings: [{exchange: src, routing_key: "#"}]}
          - {name: ae, type: fanout}
        queues:
          - {name: caught, bindings: [{exchange: ae}]}
        infrastructure: {dead_letters: false, delay: false}
        """
    )
    # Then, as on the broker, the message is dropped rather than alternate-routed.
    assert route_targets(t, "src", "a.b") == set()
