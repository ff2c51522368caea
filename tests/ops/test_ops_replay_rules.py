"""Where a replayed dead letter goes and what it carries (pure, no broker)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from amqpq import codec
from amqpq.dlq import describe, replay_message
from amqpq.transport.queues import GotMessage


def _got(
    headers: dict[str, Any], body: bytes = b'{"id":"t1","task":"ops.x","retries":4}'
) -> GotMessage:
    return GotMessage(
        queue="work.dlq",
        delivery_tag=1,
        body=body,
        properties=codec.MessageProperties(message_id="t1", headers=headers),
        exchange="amqpq.dlx",
        routing_key="work",
        redelivered=False,
        remaining=0,
    )


def _amqpq_headers(exchange: str, routing_key: str = "work") -> dict[str, Any]:
    return {
        codec.HEADER_TASK: "ops.x",
        codec.HEADER_REASON: "max_retries_exceeded",
        codec.HEADER_ERROR_TYPE: "ValueError",
        codec.HEADER_ERROR_MESSAGE: "boom",
        codec.HEADER_ORIGINAL_QUEUE: "work",
        codec.HEADER_ORIGINAL_EXCHANGE: exchange,
        codec.HEADER_ORIGINAL_ROUTING_KEY: routing_key,
        codec.HEADER_DEAD_AT: "2025-01-02T03:04:05.000+00:00",
        "amqpq-delay-bit-0": "1",
        "amqpq-delay-queue": "work",
    }


def test_a_letter_goes_back_to_its_original_exchange_and_key_with_retries_reset() -> None:
    letter = describe(_got(_amqpq_headers("tasks", "high")), "work")
    message = replay_message(letter, "work")
    assert (message.exchange, message.routing_key, message.mandatory) == ("tasks", "high", True)
    assert json.loads(message.body) == {"id": "t1", "task": "ops.x", "retries": 0}
    assert message.properties.headers == {codec.HEADER_TASK: "ops.x"}
    assert message.properties.delivery_mode == 2
    assert letter.died_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_replayed_letter_answers_a_result_queue_but_no_direct_reply_to_address() -> None:
    # The caller's channel is gone; on RabbitMQ 3.10 a reply to it can break the worker's
    # reply connection when its node left the cluster: nobody can await it any more.
    got = _got(_amqpq_headers("tasks"))
    direct = replace(got, properties=replace(got.properties, reply_to="amq.rabbitmq.reply-to.g1"))
    stored = replace(got, properties=replace(got.properties, reply_to="results.billing"))

    assert replay_message(describe(direct, "work"), "work").properties.reply_to is None
    assert replay_message(describe(stored, "work"), "work").properties.reply_to == (
        "results.billing"
    )


def test_a_letter_that_came_through_the_delay_levels_goes_straight_to_its_queue() -> None:
    # A retried task is delivered by amqpq.delay.<L> or amqpq.delay.deliver, which route
    # nothing without the delay headers: replay targets the queue it was consumed from.
    for exchange in ("amqpq.delay.3", "amqpq.delay.deliver", "amqpq.dlx"):
        message = replay_message(describe(_got(_amqpq_headers(exchange)), "work"), "work")
        assert (message.exchange, message.routing_key) == ("", "work")


def test_to_queue_skips_the_exchange_so_a_fanout_does_not_copy_it_elsewhere() -> None:
    letter = describe(_got(_amqpq_headers("broadcast", "")), "work")
    assert (
        replay_message(letter, "work").exchange,
        replay_message(letter, "work").routing_key,
    ) == (
        "broadcast",
        "",
    )
    message = replay_message(letter, "work", to_queue=True)
    assert (message.exchange, message.routing_key) == ("", "work")


def test_a_broker_dead_letter_is_read_from_the_work_queues_x_death_entry() -> None:
    # Most recent first; the delay level's "expired" entry is x-first-death, not the one to use.
    headers = {
        "x-death": [
            {
                "queue": "work",
                "reason": "delivery_limit",
                "exchange": "amqpq.delay.deliver",
                "routing-keys": ["work"],
                "count": 1,
                "time": datetime(2025, 1, 1, tzinfo=UTC),
            },
            {
                "queue": "amqpq.delay.0",
                "reason": "expired",
                "exchange": "tasks",
                "routing-keys": ["work"],
                "count": 1,
            },
        ],
        "x-first-death-queue": "amqpq.delay.0",
        "x-first-death-reason": "expired",
        "x-delivery-count": 20,
    }
    letter = describe(_got(headers), "work")
    assert (letter.source, letter.reason, letter.queue) == ("broker", "delivery_limit", "work")
    message = replay_message(letter, "work")
    assert (message.exchange, message.routing_key) == ("", "work")
    assert message.properties.headers == {}


def test_a_body_that_is_not_json_is_replayed_byte_for_byte() -> None:
    letter = describe(_got(_amqpq_headers("tasks"), body=b"{not json"), "work")
    assert letter.retries is None
    assert replay_message(letter, "work").body == b"{not json"


def test_a_letter_without_any_record_of_its_route_goes_to_its_work_queue() -> None:
    letter = describe(_got({}), "work")
    assert letter.source == "unknown"
    message = replay_message(letter, "work")
    assert (message.exchange, message.routing_key) == ("", "work")
