"""Where aio-pika and aiormq meet amqpq's types: the one mapping point of that client library.

- errors: :data:`CONNECTION_ERRORS` (what a lost connection raises, and
  :data:`CHANNEL_GONE_ERRORS`, :data:`CLOSE_ERRORS` around it), :func:`describe`
  (any of the library's exceptions in a few words, in the wording of
  :mod:`amqpq.transport.wording`), :func:`reply_text` (the broker's reason in a
  channel close or a returned message) and :func:`connect_first` (the connection
  opener's failover loop and its one error);
- properties: :func:`to_amqp_properties` and :func:`from_amqp_properties`, one in
  each direction between :class:`~amqpq.codec.MessageProperties` and aiormq's frames.

Every other aio-pika module of the transport (aio, consume, broadcast, declare)
maps through these.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aio_pika.exceptions
import aiormq
import aiormq.exceptions

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.errors import BrokerUnreachableError
from amqpq.settings import BrokerAddress, Settings
from amqpq.transport.library_logs import quiet_library_logs
from amqpq.transport.wording import (
    cannot_connect,
    credentials_refused,
    socket_reason,
    vhost_refused,
)

__all__ = [
    "CHANNEL_GONE_ERRORS",
    "CLOSE_ERRORS",
    "CONNECTION_ERRORS",
    "connect_first",
    "describe",
    "from_amqp_properties",
    "reply_text",
    "to_amqp_properties",
]

C = TypeVar("C")

# What a lost connection raises: a publish caught by one may be retried on the recovered one.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.ConnectionClosed,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.AMQPConnectionError,
    ConnectionError,
    asyncio.IncompleteReadError,
)
# Settling or publishing on a channel that is gone raises one of these (the broker has
# requeued what that channel held); a publisher retries on a new channel after one.
CHANNEL_GONE_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    aiormq.exceptions.ChannelClosed,
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.MessageProcessError,
)
# What closing a channel or cancelling a consumer may raise while the connection dies.
CLOSE_ERRORS: tuple[type[BaseException], ...] = (*CHANNEL_GONE_ERRORS, TimeoutError)
# What opening a connection raises when an address does not take it.
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    aiormq.exceptions.AMQPError,
)


def describe(exc: BaseException, address: BrokerAddress | None = None) -> str:
    """An aio-pika, aiormq or socket error as a few readable words.

    With ``address`` (while connecting), refusals of the credentials or the vhost
    name the user and vhost that were refused.
    """
    if address is not None:
        if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
            return credentials_refused(address.username)
        if isinstance(exc, aiormq.exceptions.ConnectionNotAllowed) or (
            # RabbitMQ answers connection.open for a missing vhost with connection.close,
            # which aiormq reports as an unexpected frame.
            isinstance(exc, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(exc)
        ):
            return vhost_refused(address.vhost, address.username)
    if isinstance(exc, aiormq.exceptions.ConnectionClosed):
        # (reply code, reply text) from the broker's connection.close, or just the text.
        texts = [arg for arg in exc.args if isinstance(arg, str) and arg]
        if texts:
            return texts[-1]
    else:
        reason = socket_reason(exc, address.host if address is not None else None)
        if reason is not None:
            return reason
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def reply_text(exc: BaseException) -> str:
    """The broker's reason: of a returned message (``NO_ROUTE``) or of a channel close."""
    if isinstance(exc, aiormq.exceptions.PublishError):
        delivery = getattr(exc.message, "delivery", None)
        return str(getattr(delivery, "reply_text", "NO_ROUTE"))
    # aiormq puts the broker's reply ("PRECONDITION_FAILED - inequivalent arg ...") first.
    text = str(exc.args[0] if exc.args else exc)
    return text.split(" - ", 1)[1] if " - " in text else text


async def connect_first(
    settings: Settings, open_address: Callable[[BrokerAddress], Awaitable[C]]
) -> tuple[int, C]:
    """Open a connection to the first address that takes it, in this process's failover
    order (:meth:`Settings.connect_order`): its index in that order and the connection;
    :class:`BrokerUnreachableError` naming each address and its refusal, once."""
    quiet_library_logs()
    reasons: list[str] = []
    for index, address in enumerate(settings.connect_order()):
        try:
            return index, await open_address(address)
        except _CONNECT_ERRORS as exc:
            reasons.append(f"{address.display}: {describe(exc, address)}")
    raise BrokerUnreachableError(cannot_connect(reasons))


def to_amqp_properties(message: OutgoingMessage) -> aiormq.spec.Basic.Properties:
    """The wire properties of ``message``."""
    props = message.properties
    return aiormq.spec.Basic.Properties(
        headers=props.headers,
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        delivery_mode=props.delivery_mode,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        expiration=props.expiration,
        message_id=props.message_id,
        timestamp=props.timestamp,
        message_type=props.type,
        app_id=props.app_id,
    )


def from_amqp_properties(props: aiormq.spec.Basic.Properties) -> MessageProperties:
    """amqpq's view of a received message's properties."""
    return MessageProperties(
        message_id=props.message_id,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        delivery_mode=props.delivery_mode or 1,
        priority=props.priority,
        timestamp=props.timestamp,
        expiration=props.expiration,
        type=props.message_type,
        app_id=props.app_id,
        headers=dict(props.headers) if props.headers else {},
    )
