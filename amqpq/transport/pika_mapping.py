"""Where pika meets amqpq's types: the one mapping point of that client library.

- errors: :data:`CONNECTION_ERRORS` (what a lost connection raises), :func:`describe`
  (any pika or socket error in a few words, in the wording of
  :mod:`amqpq.transport.wording`) and :func:`channel_closed_error` (a channel the
  broker closed, NOT_FOUND apart);
- properties: :func:`to_pika_properties` and :func:`from_pika_properties`, one in
  each direction between :class:`~amqpq.codec.MessageProperties` and pika's.

The synchronous producer (:mod:`amqpq.transport.blocking`) and the operator
sessions (:mod:`amqpq.transport.queues`) map through these.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions

from amqpq.codec import MessageProperties
from amqpq.errors import AmqpqError
from amqpq.transport.wording import socket_reason

__all__ = [
    "CONNECTION_ERRORS",
    "NOT_FOUND",
    "channel_closed_error",
    "describe",
    "from_pika_properties",
    "to_pika_properties",
]

# What a lost connection (or a use of a connection or channel pika already closed) raises.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    ConnectionError,
    OSError,
)
# The reply code of a channel closed because a queue or exchange does not exist.
NOT_FOUND = 404


def describe(exc: BaseException, host: str | None = None) -> str:
    """A pika or socket error as a few readable words."""
    reason = socket_reason(exc, host)
    if reason is not None:
        return reason
    # pika wraps the socket error in one or two connector errors.
    inner = getattr(exc, "exception", None)
    if isinstance(inner, BaseException):
        return describe(inner, host)
    if exc.args and isinstance(exc.args[0], BaseException):
        return describe(exc.args[0], host)
    if isinstance(exc, pika.exceptions.ChannelClosed | pika.exceptions.ConnectionClosed):
        return f"{exc.reply_code} {exc.reply_text}"
    return str(exc) or type(exc).__name__


def channel_closed_error(
    exc: pika.exceptions.ChannelClosedByBroker,
    *,
    missing: Callable[[], AmqpqError],
    other: Callable[[str], AmqpqError],
) -> AmqpqError:
    """The amqpq error for a channel the broker closed: ``missing()`` when what it named
    does not exist (NOT_FOUND), else ``other(reason)``."""
    return missing() if exc.reply_code == NOT_FOUND else other(describe(exc))


def to_pika_properties(props: MessageProperties) -> pika.BasicProperties:
    """amqpq's message properties as pika's (AMQP timestamps are whole seconds)."""
    return pika.BasicProperties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        headers=props.headers or None,
        delivery_mode=props.delivery_mode,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        expiration=props.expiration,
        message_id=props.message_id,
        timestamp=int(props.timestamp.timestamp()) if props.timestamp else None,
        type=props.type,
        app_id=props.app_id,
    )


def from_pika_properties(properties: Any) -> MessageProperties:
    """amqpq's view of a received message's properties (header values as plain Python)."""
    timestamp = properties.timestamp
    return MessageProperties(
        message_id=properties.message_id,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        delivery_mode=int(properties.delivery_mode or 1),
        priority=properties.priority,
        timestamp=datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None,
        expiration=properties.expiration,
        type=properties.type,
        app_id=properties.app_id,
        headers=_plain(dict(properties.headers or {})),
    )


def _plain(value: Any) -> Any:
    """Header values as plain Python: pika's long subclass -> int, undecodable bytes -> str."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # AMQP timestamps are UTC seconds
    return value
