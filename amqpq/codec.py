"""Envelope <-> AMQP message: every mapping between the two lives here.

The header names themselves are protocol facts and live in :mod:`amqpq.wire`
(re-exported here for the callers that build or read task messages). The
transport layer turns :class:`OutgoingMessage` into a pika or aio-pika
message and an incoming delivery into :class:`MessageProperties`; nothing else
knows which header holds what.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from amqpq.envelope import PROTOCOL_VERSION, Reply, TaskEnvelope
from amqpq.errors import DecodeError
from amqpq.wire import (
    BROKER_DEAD_LETTER_HEADERS,
    DELAY_HEADER_PREFIX,
    HEADER_DEAD_AT,
    HEADER_ERROR_MESSAGE,
    HEADER_ERROR_TYPE,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_PROTOCOL,
    HEADER_REASON,
    HEADER_REDELIVERIES,
    HEADER_TASK,
    is_direct_reply_to,
)

__all__ = [
    "CONTENT_TYPE",
    "HEADER_DEAD_AT",
    "HEADER_ERROR_MESSAGE",
    "HEADER_ERROR_TYPE",
    "HEADER_ORIGINAL_EXCHANGE",
    "HEADER_ORIGINAL_QUEUE",
    "HEADER_ORIGINAL_ROUTING_KEY",
    "HEADER_PROTOCOL",
    "HEADER_REASON",
    "HEADER_REDELIVERIES",
    "HEADER_TASK",
    "MessageProperties",
    "OutgoingMessage",
    "decode_reply",
    "decode_task",
    "encode_reply",
    "encode_task",
    "fresh_headers",
]

CONTENT_TYPE = "application/json"
# Not the broker's, but the same kind: a republished message starts a new count.
_DROPPED_ON_REPUBLISH = (*BROKER_DEAD_LETTER_HEADERS, HEADER_REDELIVERIES)


@dataclass(frozen=True, slots=True)
class MessageProperties:
    """The AMQP basic properties amqpq reads and writes, free of any client library."""

    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    content_type: str | None = CONTENT_TYPE
    content_encoding: str | None = "utf-8"
    delivery_mode: int = 2
    priority: int | None = None
    timestamp: datetime | None = None
    expiration: str | None = None
    type: str | None = None
    app_id: str | None = "amqpq"
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message ready to publish."""

    body: bytes
    properties: MessageProperties
    exchange: str
    routing_key: str
    mandatory: bool = True


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def encode_task(
    envelope: TaskEnvelope,
    *,
    exchange: str,
    routing_key: str,
    reply_to: str | None = None,
    priority: int | None = None,
    headers: dict[str, Any] | None = None,
) -> OutgoingMessage:
    """A task message: persistent, JSON, with the task name visible in headers and ``type``."""
    all_headers: dict[str, Any] = dict(headers or {})
    all_headers[HEADER_PROTOCOL] = PROTOCOL_VERSION
    all_headers[HEADER_TASK] = envelope.task
    body = envelope.model_dump_json(exclude_none=True).encode()
    return OutgoingMessage(
        body=body,
        exchange=exchange,
        routing_key=routing_key,
        properties=MessageProperties(
            message_id=envelope.id,
            correlation_id=envelope.id,
            reply_to=reply_to,
            priority=priority,
            timestamp=datetime.now(UTC).replace(microsecond=0),
            type=envelope.task,
            headers=all_headers,
        ),
    )


def decode_task(body: bytes, properties: MessageProperties) -> TaskEnvelope:
    """Parse a task body; raises :class:`DecodeError` with a reason fit for a dead-letter header."""
    if properties.content_type not in (None, "", CONTENT_TYPE):
        raise DecodeError(f"content_type {properties.content_type!r} is not {CONTENT_TYPE}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(raw, dict):
        raise DecodeError(f"body is JSON {type(raw).__name__}, expected an object")
    # A plain client may leave the id to the message_id property.
    if "id" not in raw and properties.message_id:
        raw["id"] = properties.message_id
    try:
        envelope = TaskEnvelope.model_validate(raw)
    except ValidationError as exc:
        raise DecodeError(f"invalid envelope: {_first_error(exc)}") from exc
    if envelope.protocol > PROTOCOL_VERSION:
        raise DecodeError(
            f"protocol version {envelope.protocol} is newer than this worker's {PROTOCOL_VERSION}"
        )
    return envelope


def encode_reply(reply: Reply, *, reply_to: str) -> OutgoingMessage:
    """A reply on the default exchange to ``reply_to`` (direct reply-to or a named queue).

    Replies are not mandatory: a caller that went away is not an error for the worker.
    """
    return OutgoingMessage(
        body=reply.model_dump_json(exclude_none=True).encode(),
        exchange="",
        routing_key=reply_to,
        mandatory=False,
        properties=MessageProperties(
            message_id=None,
            correlation_id=reply.id,
            type="amqpq.reply",
            # Replies to a durable result queue must survive a broker restart too.
            delivery_mode=1 if is_direct_reply_to(reply_to) else 2,
            headers={HEADER_PROTOCOL: PROTOCOL_VERSION},
        ),
    )


def decode_reply(body: bytes) -> Reply:
    try:
        return Reply.model_validate_json(body)
    except ValidationError as exc:
        raise DecodeError(f"invalid reply: {_first_error(exc)}") from exc


def fresh_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """Headers of a consumed message fit to republish it: without what the broker added
    when dead-lettering and without the steering headers of a finished delay."""
    return {
        k: v
        for k, v in (headers or {}).items()
        if k not in _DROPPED_ON_REPUBLISH and not k.startswith(DELAY_HEADER_PREFIX)
    }


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
