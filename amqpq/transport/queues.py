"""Operator access to queues on pika's ``BlockingConnection``: exact counts, peeking, purging.

:class:`QueueSession` is what ``amqpq dlq`` and ``amqpq purge`` stand on. It
reads with ``basic.get`` without acking and gives back what it did not ack by
closing its reading channel: RabbitMQ then returns every unacked message to
the head of the queue in its original order, for classic and quorum queues
alike (a ``basic.nack`` with requeue would put them at the tail of a quorum
queue). A crash or a lost connection has the same effect, so reading never
loses a message. Publishes are persistent, mandatory and confirmed, one at a
time.

pika errors become :mod:`amqpq.errors` here, through :mod:`amqpq.transport.pika_mapping`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.errors import (
    BrokerError,
    BrokerUnreachableError,
    ConfigError,
    PublishError,
    PublishNackedError,
    UnroutableError,
)
from amqpq.settings import Settings, connection_name
from amqpq.transport.blocking import open_blocking_connection
from amqpq.transport.pika_mapping import (
    CONNECTION_ERRORS,
    channel_closed_error,
    describe,
    from_pika_properties,
    to_pika_properties,
)
from amqpq.transport.wording import CONNECTION_LOST

__all__ = ["GotMessage", "QueueCount", "QueueNotFoundError", "QueueSession"]

log = logging.getLogger("amqpq.transport")


class QueueNotFoundError(ConfigError):
    """The queue does not exist on the broker."""


@dataclass(frozen=True, slots=True)
class QueueCount:
    """Exact figures from a passive declare (not the management API's lagging statistics)."""

    name: str
    messages: int  # ready, not counting unacked
    consumers: int


@dataclass(frozen=True, slots=True)
class GotMessage:
    """One message taken with ``basic.get`` and not acked yet."""

    queue: str
    delivery_tag: int
    body: bytes
    properties: MessageProperties
    exchange: str
    routing_key: str
    redelivered: bool
    remaining: int  # ready messages left behind it when it was taken


class QueueSession:
    """``with QueueSession(settings, "dlq") as session: session.count("work.dlq")``."""

    def __init__(self, settings: Settings, role: str = "cli", *, confirm_timeout: float = 30.0):
        self.settings = settings
        self.name = connection_name(role)
        self.confirm_timeout = confirm_timeout
        self._connection: BlockingConnection | None = None
        self._reader: BlockingChannel | None = None
        self._publisher: BlockingChannel | None = None

    # -- connection --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        if self._connection is not None and self._connection.is_open:
            return
        self._connection = open_blocking_connection(self.settings, self.name, self.confirm_timeout)

    def close(self) -> None:
        """Close everything; unacked messages go back to their queues in order."""
        connection, self._connection = self._connection, None
        self._reader = self._publisher = None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # closing a dying connection: nothing left to save
                log.debug("closing the queue session failed", exc_info=True)

    def _channel(self, which: str) -> BlockingChannel:
        self.connect()
        assert self._connection is not None
        current = self._reader if which == "reader" else self._publisher
        if current is not None and current.is_open:
            return current
        try:
            channel = self._connection.channel()
            if which == "publisher":
                channel.confirm_delivery()
        except CONNECTION_ERRORS as exc:
            raise self._lost(exc) from exc
        if which == "reader":
            self._reader = channel
        else:
            self._publisher = channel
        return channel

    def _no_queue(self, queue: str) -> QueueNotFoundError:
        return QueueNotFoundError(
            f"queue {queue!r} does not exist in vhost {self.settings.vhost!r}"
        )

    @staticmethod
    def _lost(exc: BaseException, during: str = "") -> BrokerUnreachableError:
        return BrokerUnreachableError(f"{CONNECTION_LOST}{during}: {describe(exc)}")

    # -- queues ------------------------------------------------------------------------------

    def count(self, queue: str) -> QueueCount:
        """Ready messages and consumers of ``queue``; :class:`QueueNotFoundError` if missing."""
        # A side channel: a 404 closes the channel it happens on, and must not take
        # the reader's unacked messages with it.
        method = self._on_side_channel(queue, lambda ch: ch.queue_declare(queue, passive=True))
        return QueueCount(
            queue, int(method.method.message_count), int(method.method.consumer_count)
        )

    def exists(self, queue: str) -> bool:
        try:
            self.count(queue)
        except QueueNotFoundError:
            return False
        return True

    def purge(self, queue: str) -> int:
        """Remove every ready message; the number removed. Unacked messages stay."""
        method = self._on_side_channel(queue, lambda ch: ch.queue_purge(queue))
        return int(method.method.message_count)

    def _on_side_channel(self, queue: str, action: Any) -> Any:
        self.connect()
        assert self._connection is not None
        try:
            channel = self._connection.channel()
        except CONNECTION_ERRORS as exc:
            raise self._lost(exc) from exc
        try:
            return action(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise channel_closed_error(
                exc,
                missing=lambda: self._no_queue(queue),
                other=lambda reason: BrokerError(f"queue {queue!r}: {reason}"),
            ) from exc
        except CONNECTION_ERRORS as exc:
            raise self._lost(exc) from exc
        finally:
            if channel.is_open:
                channel.close()

    # -- reading without losing --------------------------------------------------------------

    def get(self, queue: str) -> GotMessage | None:
        """Take the next ready message without acking it; None when the queue is empty.

        The message stays unacked until :meth:`ack`; :meth:`release` (or closing the
        session) gives back every message not acked, at the head of the queue, in order.
        """
        channel = self._channel("reader")
        try:
            method, properties, body = channel.basic_get(queue, auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._reader = None
            raise channel_closed_error(
                exc,
                missing=lambda: self._no_queue(queue),
                other=lambda reason: BrokerError(f"reading queue {queue!r}: {reason}"),
            ) from exc
        except CONNECTION_ERRORS as exc:
            raise self._lost(exc, f" while reading {queue!r}") from exc
        if method is None:
            return None
        return GotMessage(
            queue=queue,
            delivery_tag=int(method.delivery_tag),
            body=bytes(body),
            properties=from_pika_properties(properties),
            exchange=str(method.exchange or ""),
            routing_key=str(method.routing_key or ""),
            redelivered=bool(method.redelivered),
            remaining=int(method.message_count),
        )

    def ack(self, message: GotMessage) -> None:
        """Ack one message taken with :meth:`get`: it leaves its queue for good."""
        channel = self._reader
        if channel is None or not channel.is_open:
            raise BrokerError(
                f"cannot ack message {message.delivery_tag} of {message.queue!r}: its channel "
                "closed, so RabbitMQ has put it back in the queue"
            )
        try:
            channel.basic_ack(message.delivery_tag)
        except CONNECTION_ERRORS as exc:
            raise BrokerUnreachableError(
                f"{CONNECTION_LOST} before an ack ({describe(exc)}); "
                f"the message is back in {message.queue!r}"
            ) from exc

    def release(self) -> None:
        """Give back every message taken and not acked, at the head of its queue, in order."""
        channel, self._reader = self._reader, None
        if channel is not None and channel.is_open:
            try:
                channel.close()
            except CONNECTION_ERRORS:  # the broker requeues them anyway
                log.debug("closing the reader channel failed", exc_info=True)

    # -- publishing --------------------------------------------------------------------------

    def publish(self, message: OutgoingMessage) -> None:
        """Publish one message, persistent and mandatory, and wait for its confirm.

        Raises :class:`UnroutableError` when no queue took it (or its exchange is
        missing), :class:`PublishNackedError` when the broker refused it.
        """
        channel = self._channel("publisher")
        properties = to_pika_properties(message.properties)
        where = (
            f"exchange {message.exchange or '(default)'!r} with routing key {message.routing_key!r}"
        )
        try:
            channel.basic_publish(
                message.exchange,
                message.routing_key,
                message.body,
                properties,
                mandatory=message.mandatory,
            )
        except pika.exceptions.UnroutableError as exc:
            raise UnroutableError(f"no queue is bound for {where}: the message came back") from exc
        except pika.exceptions.NackError as exc:
            raise PublishNackedError(f"RabbitMQ refused the message for {where}") from exc
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._publisher = None
            raise channel_closed_error(
                exc,
                missing=lambda: UnroutableError(
                    f"exchange {message.exchange!r} does not exist in vhost {self.settings.vhost!r}"
                ),
                other=lambda reason: PublishError(f"RabbitMQ closed the channel: {reason}"),
            ) from exc
        except CONNECTION_ERRORS as exc:
            raise BrokerUnreachableError(
                f"{CONNECTION_LOST} during a publish to {where} "
                f"({describe(exc)}); it may or may not have been taken"
            ) from exc
