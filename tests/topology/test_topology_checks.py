"""Models and offline checks: what RabbitMQ would refuse is caught before anything is declared."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from amqpq.errors import ConfigError, TopologyError
from amqpq.topology.models import Topology

Parse = Callable[..., Topology]


def problems(parse: Parse, text: str) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        parse(text)
    return [line.split(": ", 1)[1] for line in caught.value.problems]  # drop "t.yaml:N"


def test_defaults_are_durable_classic_queues_and_direct_exchanges(parse: Parse) -> None:
    t = parse("exchanges: [{name: x}]\nqueues: [{name: q}]\n")
    assert (t.exchanges[0].type, t.exchanges[0].durable) == ("direct", True)
    q = t.queues[0]
    assert (q.type, q.durable, q.exclusive, q.auto_delete) == ("classic", True, False, False)
    # The type is always sent: a vhost may default to quorum.
    assert q.declare_arguments == {"x-queue-type": "classic"}


def test_typed_queue_fields_become_x_arguments(parse: Parse) -> None:
    t = parse(
        """
        queues:
          - name: q
            type: quorum
            max_length: 10
            max_length_bytes: 2048
            message_ttl: 60000
            expires: 3600000
            delivery_limit: 5
            single_active_consumer: true
            overflow: reject-publish
            dead_letter_exchange: dlx
            dead_letter_routing_key: q
        """
    )
    assert t.queues[0].declare_arguments == {
        "x-max-length": 10,
        "x-max-length-bytes": 2048,
        "x-message-ttl": 60000,
        "x-expires": 3600000,
        "x-delivery-limit": 5,
        "x-single-active-consumer": True,
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "dlx",
        "x-dead-letter-routing-key": "q",
        "x-queue-type": "quorum",
    }


def test_a_typed_field_and_its_argument_must_agree(parse: Parse) -> None:
    assert problems(parse, "queues: [{name: q, max_length: 1, arguments: {x-max-length: 2}}]") == [
        "queues[0]: max_length and arguments.x-max-length disagree; set only one"
    ]


def test_routes_prefer_exact_names_then_globs_in_file_order_then_the_default(
    parse: Parse,
) -> None:
    t = parse(
        """
        exchanges: [{name: x, type: fanout}]
        queues: [{name: q, bindings: [{exchange: x}]}]
        routes:
          "*": {exchange: x, routing_key: default}
          "reports.*": {exchange: x, routing_key: glob1}
          "reports.d*": {exchange: x, routing_key: glob2}
          reports.daily: {exchange: x, routing_key: exact}
        """
    )
    assert t.route_for("reports.daily").routing_key == "exact"
    assert t.route_for("reports.dump").routing_key == "glob1"
    assert t.route_for("tasks.add").routing_key == "default"
    assert t.route_pattern_for("reports.weekly") == "reports.*"


def test_a_task_without_any_matching_route_is_a_clear_config_error(parse: Parse) -> None:
    t = parse(
        """
        exchanges: [{name: x, type: fanout}]
        queues: [{name: q, bindings: [{exchange: x}]}]
        routes: {"reports.*": {exchange: x}}
        """
    )
    with pytest.raises(ConfigError, match=r"no route for task 'tasks\.add'"):
        t.route_for("tasks.add")


def test_quorum_and_stream_queues_refuse_what_rabbitmq_refuses(parse: Parse) -> None:
    assert problems(
        parse,
        """
        queues:
          - {name: q, type: quorum, exclusive: true, auto_delete: true, durable: false,
             max_priority: 5, arguments: {x-queue-mode: lazy}}
          - {name: s, type: stream, message_ttl: 10, max_length: 5, max_age: 7D,
             dead_letter_exchange: d}
          - {name: c, delivery_limit: 3, arguments: {x-dead-letter-strategy: at-least-once}}
        """,
    ) == [
        "queues[0].durable: quorum queues are always durable",
        "queues[0].exclusive: quorum queues cannot be exclusive",
        "queues[0].auto_delete: quorum queues cannot be auto-delete",
        "queues[0].arguments.x-queue-mode: RabbitMQ refuses x-queue-mode on quorum queues",
        "queues[0].max_priority: RabbitMQ refuses x-max-priority on quorum queues",
        "queues[1].max_length: RabbitMQ refuses x-max-length on stream queues",
        "queues[1].message_ttl: RabbitMQ refuses x-message-ttl on stream queues",
        "queues[1].dead_letter_exchange: RabbitMQ refuses x-dead-letter-exchange on stream queues",
        "queues[2].arguments.x-dead-letter-strategy: RabbitMQ refuses x-dead-letter-strategy "
        "on classic queues",
        "queues[2].delivery_limit: RabbitMQ refuses x-delivery-limit on classic queues",
    ]


def test_argument_values_are_checked(parse: Parse) -> None:
    assert problems(
        parse,
        """
        queues:
          - name: q
            arguments:
              x-max-priority: 300
              x-max-length: "10"
              x-overflow: drop-tail
              x-single-active-consumer: "yes"
              x-dead-letter-routing-key: q
        """,
    ) == [
        "queues[0].arguments.x-max-priority: expected an integer from 1 to 255, got 300",
        "queues[0].arguments.x-max-length: expected an integer >= 0, got '10'",
        "queues[0].arguments.x-overflow: expected one of 'drop-head', 'reject-publish', "
        "'reject-publish-dlx', got 'drop-tail'",
        "queues[0].arguments.x-single-active-consumer: expected true or false, got 'yes'",
        "queues[0].arguments.x-dead-letter-routing-key: a dead-letter routing key needs a "
        "dead-letter exchange as well",
    ]


def test_max_priority_field_is_limited_to_1_255(parse: Parse) -> None:
    (problem,) = problems(parse, "queues: [{name: q, max_priority: 0}]")
    assert problem.startswith("queues[0].max_priority: expected greater than or equal to 1")


def test_references_to_undeclared_exchanges_are_errors(parse: Parse) -> None:
    undeclared = (
        "is not declared under exchanges: (built-in amq.* exchanges may be used without "
        "declaring them)"
    )
    assert problems(
        parse,
        """
        exchanges:
          - {name: a, type: topic, alternate_exchange: lost, bindings: [{exchange: gone}]}
        queues:
          - {name: q, bindings: [{exchange: a, routing_key: "#"}, {exchange: amq.topic}]}
        routes:
          "*": {exchange: nowhere}
        """,
    ) == [
        f"exchanges[0].alternate_exchange: exchange 'lost' {undeclared}",
        f"exchanges[0].bindings[0].exchange: exchange 'gone' {undeclared}",
        f"routes[\"*\"].exchange: exchange 'nowhere' {undeclared}",
    ]


def test_reserved_names_and_duplicates_are_errors(parse: Parse) -> None:
    assert problems(
        parse,
        """
        exchanges: [{name: amq.mine}, {name: x}, {name: x}]
        queues: [{name: amq.q}]
        """,
    ) == [
        "exchanges[0].name: names starting with 'amq.' are reserved by RabbitMQ; bind to the "
        "built-in amq.* exchanges without declaring them",
        "exchanges[2].name: exchange 'x' is declared twice",
        "queues[0].name: names starting with 'amq.' are reserved by RabbitMQ",
    ]


def test_headers_bindings_need_a_valid_x_match(parse: Parse) -> None:
    assert problems(
        parse,
        """
        exchanges: [{name: h, type: headers}]
        queues: [{name: q, bindings: [{exchange: h, arguments: {x-match: some, a: "1"}}]}]
        """,
    ) == [
        "queues[0].bindings[0].arguments.x-match: expected one of all, any, all-with-x, "
        "any-with-x, got 'some'"
    ]


def test_routes_that_reach_no_queue_are_errors_for_every_exchange_type(parse: Parse) -> None:
    assert problems(
        parse,
        """
        exchanges:
          - {name: d, type: direct}
          - {name: t, type: topic}
          - {name: h, type: headers}
          - {name: f, type: fanout}
          - {name: i, type: fanout, internal: true}
        queues:
          - name: q
            bindings:
              - {exchange: d, routing_key: k}
              - {exchange: t, routing_key: "a.*"}
              - {exchange: h, arguments: {x-match: all, format: pdf}}
              - {exchange: i}
        routes:
          ok.d: {exchange: d, routing_key: k}
          ok.t: {exchange: t, routing_key: a.b}
          ok.h: {exchange: h, headers: {format: pdf}}
          bad.d: {exchange: d, routing_key: other}
          bad.t: {exchange: t, routing_key: a.b.c}
          bad.h: {exchange: h, headers: {format: doc}}
          bad.f: {exchange: f}
          bad.i: {exchange: i}
        """,
    ) == [
        "routes[\"bad.d\"]: a message to exchange 'd' with routing key 'other' reaches no queue; "
        "bind a queue that matches it",
        "routes[\"bad.t\"]: a message to exchange 't' with routing key 'a.b.c' reaches no queue; "
        "bind a queue that matches it",
        "routes[\"bad.h\"]: a message to exchange 'h' with routing key '' and headers "
        "{'format': 'doc'} reaches no queue; bind a queue that matches it",
        "routes[\"bad.f\"]: a message to exchange 'f' with routing key '' reaches no queue; "
        "bind a queue that matches it",
        "routes[\"bad.i\"].exchange: exchange 'i' is internal: RabbitMQ refuses direct publishes",
    ]


def test_schedules_need_valid_cron_timezone_and_a_route(parse: Parse) -> None:
    assert problems(
        parse,
        """
        exchanges: [{name: x, type: fanout}]
        queues: [{name: q, bindings: [{exchange: x}]}]
        routes: {"reports.*": {exchange: x}}
        schedules:
          a: {task: reports.a, cron: "0 25 * * *"}
          b: {task: reports.b, interval: 60, timezone: Mars/Olympus}
          c: {task: reports.c}
          d: {task: tasks.d, interval: 5}
        """,
    ) == [
        "schedules.a.cron: expected a cron expression like '0 9 * * *' (minute hour day month "
        "weekday), got '0 25 * * *'",
        "schedules.b.timezone: expected an IANA time zone such as 'UTC' or 'Europe/Berlin', "
        "got 'Mars/Olympus'",
        "schedules.c: expected exactly one of cron or interval",
    ]
    # once the schema is valid, a schedule whose task has no route is caught too
    assert problems(
        parse,
        """
        exchanges: [{name: x, type: fanout}]
        queues: [{name: q, bindings: [{exchange: x}]}]
        routes: {"reports.*": {exchange: x}}
        schedules: {d: {task: tasks.d, interval: 5}}
        """,
    ) == [
        "schedules.d.task: no entry under routes: matches task 'tasks.d' (add it or a default '*')"
    ]


def test_a_valid_schedule_exposes_its_zone(parse: Parse) -> None:
    t = parse(
        """
        exchanges: [{name: x, type: fanout}]
        queues: [{name: q, bindings: [{exchange: x}]}]
        routes: {"*": {exchange: x}}
        schedules: {daily: {task: r.daily, cron: "0 9 * * *", timezone: Asia/Seoul}}
        """
    )
    assert t.schedules["daily"].tz.key == "Asia/Seoul"
