"""The wire format: envelope and reply encoding, and decoding of bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from amqpq.codec import (
    HEADER_PROTOCOL,
    HEADER_TASK,
    MessageProperties,
    decode_reply,
    decode_task,
    encode_reply,
    encode_task,
    fresh_headers,
)
from amqpq.envelope import PROTOCOL_VERSION, ErrorInfo, Reply, TaskEnvelope, TaskState
from amqpq.errors import DecodeError


def test_a_task_message_is_persistent_json_named_and_identified() -> None:
    envelope = TaskEnvelope(id="id-1", task="tasks.add", args=[3, 4])
    message = encode_task(
        envelope,
        exchange="tasks",
        routing_key="default",
        reply_to="amq.rabbitmq.reply-to",
        priority=5,
        headers={"format": "pdf"},
    )
    props = message.properties
    assert (message.exchange, message.routing_key, message.mandatory) == ("tasks", "default", True)
    assert props.delivery_mode == 2
    assert props.content_type == "application/json"
    assert props.message_id == props.correlation_id == "id-1"
    assert props.type == "tasks.add"
    assert props.priority == 5
    assert props.headers == {
        "format": "pdf",
        HEADER_PROTOCOL: PROTOCOL_VERSION,
        HEADER_TASK: "tasks.add",
    }
    body = json.loads(message.body)
    assert body == {
        "protocol": 1,
        "id": "id-1",
        "task": "tasks.add",
        "args": [3, 4],
        "kwargs": {},
        "retries": 0,
    }


def test_decoding_round_trips_and_fills_the_id_from_message_id() -> None:
    props = MessageProperties(message_id="from-props")
    envelope = decode_task(b'{"task": "tasks.add", "args": [1, 2]}', props)
    assert envelope.id == "from-props"
    assert envelope.args == [1, 2]
    eta = datetime(2030, 1, 1, tzinfo=UTC)
    again = decode_task(TaskEnvelope(id="a", task="t", eta=eta).model_dump_json().encode(), props)
    assert again.eta == eta


@pytest.mark.parametrize(
    ("body", "props", "reason"),
    [
        (b"\xff\xfe", MessageProperties(), "not UTF-8"),
        (b"{not json", MessageProperties(), "not JSON"),
        (b"[1, 2]", MessageProperties(), "expected an object"),
        (b'{"id": "x"}', MessageProperties(), "invalid envelope: task"),
        (b'{"id": "x", "task": "t", "args": {}}', MessageProperties(), "args"),
        (b'{"id": "x", "task": "t"}', MessageProperties(content_type="text/plain"), "content_type"),
        (b'{"id": "x", "task": "t", "protocol": 99}', MessageProperties(), "newer"),
    ],
)
def test_bad_bodies_raise_decode_errors_with_a_reason(
    body: bytes, props: MessageProperties, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_task(body, props)


def test_unknown_envelope_fields_are_ignored_for_forward_compatibility() -> None:
    envelope = decode_task(b'{"id": "x", "task": "t", "future_field": 1}', MessageProperties())
    assert envelope.task == "t"


def test_replies_go_to_reply_to_on_the_default_exchange_not_mandatory() -> None:
    reply = Reply(
        id="id-1", state=TaskState.FAILURE, error=ErrorInfo(type="ValueError", message="boom")
    )
    message = encode_reply(reply, reply_to="amq.rabbitmq.reply-to.abc")
    assert (message.exchange, message.routing_key, message.mandatory) == (
        "",
        "amq.rabbitmq.reply-to.abc",
        False,
    )
    assert message.properties.correlation_id == "id-1"
    assert decode_reply(message.body) == reply
    durable = encode_reply(reply, reply_to="results.billing")
    assert durable.properties.delivery_mode == 2


def test_republished_headers_drop_broker_death_marks_and_delay_steering() -> None:
    headers = {
        "x-death": [{}],
        "x-first-death-reason": "expired",
        "amqpq-delay-bit-3": "1",
        "amqpq-delay-queue": "q",
        "format": "pdf",
        HEADER_TASK: "t",
    }
    assert fresh_headers(headers) == {"format": "pdf", HEADER_TASK: "t"}
