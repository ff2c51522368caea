"""A worker's per-chord queues on RabbitMQ (:class:`~amqpq.transport.base.ChordQueues`).

Each member of a chord's header publishes its result to the chord's queue (durable,
classic, ``x-expires``) and reads the queue's ready count; the one that sees every
member there joins: it consumes the queue under an exclusive consumer (a second
joiner is refused with RESOURCE_LOCKED), publishes a marker behind the results and
reads up to it, so it has seen every message the queue held. docs/workflows.md has
the whole protocol and its failure analysis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage

from amqpq.codec import OutgoingMessage
from amqpq.errors import PublishError, UnroutableError
from amqpq.transport.aio import AsyncBroker, ChannelSlot, publish_on
from amqpq.transport.aio_mapping import CLOSE_ERRORS, CONNECTION_ERRORS, describe
from amqpq.wire import HEADER_CHORD_MARKER, QUEUE_TYPE_ARGUMENT

__all__ = ["AioChordQueues"]

log = logging.getLogger("amqpq.worker")

# How long a joiner waits for its own marker to come round (the queue's messages ahead
# of it): well above any delivery of a few thousand small messages.
_MARKER_TIMEOUT = 60.0


_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPChannelError,
    *CONNECTION_ERRORS,
)


def _arguments(expires_ms: int) -> dict[str, Any]:
    return {QUEUE_TYPE_ARGUMENT: "classic", "x-expires": expires_ms}


class AioChordQueues:
    """Chord queues on the worker's connection: one channel for adding results, a fresh
    channel for each join (an exclusive consume that is refused closes its channel)."""

    def __init__(self, broker: AsyncBroker) -> None:
        self._broker = broker
        self._channel = ChannelSlot(broker)
        self._expires: dict[str, int] = {}

    async def add(self, queue: str, message: OutgoingMessage, *, expires_ms: int) -> int:
        self._expires[queue] = expires_ms
        try:
            channel = await self._channel.get()
            try:
                await publish_on(channel, message)
            except UnroutableError:  # the first result of this chord: declare its queue
                await self._declare(queue, expires_ms)
                await publish_on(await self._channel.get(), message)
            # Declared again (same arguments): the ready count, and the expiry restarts.
            return await self._declare(queue, expires_ms)
        except _BROKER_ERRORS as exc:
            self._channel.forget()
            raise PublishError(f"chord queue {queue!r}: {describe(exc)}") from exc

    async def _declare(self, queue: str, expires_ms: int) -> int:
        channel = await self._channel.get()
        underlay = await channel.get_underlay_channel()
        ok = await underlay.queue_declare(queue, durable=True, arguments=_arguments(expires_ms))
        return int(ok.message_count or 0)

    async def join(self, queue: str) -> AioChordJoin | None:
        expires_ms = self._expires.get(queue, 86_400_000)
        channel = await self._raw_channel()
        arrived: asyncio.Queue[DeliveredMessage] = asyncio.Queue()

        async def on_message(message: DeliveredMessage) -> None:
            arrived.put_nowait(message)

        try:
            ok = await channel.basic_consume(queue, on_message, exclusive=True, no_ack=False)
        except (
            aiormq.exceptions.ChannelLockedResource,
            aiormq.exceptions.ChannelAccessRefused,
            aiormq.exceptions.ChannelNotFoundEntity,
        ) as exc:
            log.debug("chord queue %s not joined here: %s", queue, describe(exc))
            await _close(channel)
            return None
        except _BROKER_ERRORS as exc:
            await _close(channel)
            raise PublishError(f"chord queue {queue!r}: {describe(exc)}") from exc
        join = AioChordJoin(channel, queue, str(ok.consumer_tag), expires_ms)
        marker = uuid.uuid4().hex
        try:
            # Behind every message ready now: once it comes round, all of them were read.
            confirm = await channel.basic_publish(
                b"",
                routing_key=queue,
                properties=aiormq.spec.Basic.Properties(
                    headers={HEADER_CHORD_MARKER: marker}, delivery_mode=2
                ),
                mandatory=True,
            )
            if not isinstance(confirm, aiormq.spec.Basic.Ack):
                raise PublishError(f"chord queue {queue!r}: the join's marker was refused")
            async with asyncio.timeout(_MARKER_TIMEOUT):
                while True:
                    message = await arrived.get()
                    tag = message.delivery_tag
                    assert tag is not None
                    headers = message.header.properties.headers or {}
                    if HEADER_CHORD_MARKER in headers:
                        join.drop_tags.append(tag)  # ours, or one a crashed joiner left
                        if headers[HEADER_CHORD_MARKER] == marker:
                            break
                        continue
                    join.tags.append(tag)
                    join.messages.append(bytes(message.body))
        except _BROKER_ERRORS as exc:
            await _close(channel)
            raise PublishError(f"chord queue {queue!r}: {describe(exc)}") from exc
        except BaseException:
            await _close(channel)
            raise
        return join

    async def _raw_channel(self) -> aiormq.abc.AbstractChannel:
        """A plain channel on the worker's connection: one the broker closes (a refused
        exclusive consume) stays closed, where a robust one would be reopened."""
        connection = await self._broker.connect()
        transport = connection.transport
        if transport is None:
            raise PublishError("chord join: no connection to RabbitMQ")
        try:
            return await transport.connection.channel(publisher_confirms=True)
        except _BROKER_ERRORS as exc:
            raise PublishError(f"chord join: {describe(exc)}") from exc


class AioChordJoin:
    """A join in progress: the channel that holds the chord queue's messages."""

    def __init__(
        self, channel: aiormq.abc.AbstractChannel, queue: str, consumer_tag: str, expires_ms: int
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._consumer_tag = consumer_tag
        self._expires_ms = expires_ms
        self.messages: list[bytes] = []
        self.tags: list[int] = []
        self.drop_tags: list[int] = []

    async def finish(self) -> None:
        try:
            await self._channel.queue_delete(self._queue)
        except _BROKER_ERRORS as exc:
            # The body is out: a queue left behind expires by itself.
            log.warning("chord queue %s not deleted (%s); it expires", self._queue, describe(exc))
        finally:
            await _close(self._channel)

    async def release(self, drop: Sequence[int]) -> int:
        channel = self._channel
        try:
            await channel.basic_cancel(self._consumer_tag)
            for tag in [*self.drop_tags, *(self.tags[i] for i in drop)]:
                await channel.basic_ack(tag)
            # Back in the queue in their order (with what was pushed here after the marker).
            await channel.basic_nack(0, multiple=True, requeue=True)
            # The count must come after the requeue: a queue answers a declare ahead of the
            # requeue still in its mailbox (the count would miss them, and a member that
            # published meanwhile would be missed by both). A barrier published on this
            # channel is handled after the requeue; once it is confirmed, the count is
            # right. It expires at once (TTL 0) and is counted until it reaches the head.
            confirm = await channel.basic_publish(
                b"",
                routing_key=self._queue,
                properties=aiormq.spec.Basic.Properties(
                    expiration="0", headers={HEADER_CHORD_MARKER: "barrier"}
                ),
            )
            if not isinstance(confirm, aiormq.spec.Basic.Ack):
                raise PublishError(f"chord queue {self._queue!r}: the barrier was refused")
            ok = await channel.queue_declare(
                self._queue, durable=True, arguments=_arguments(self._expires_ms)
            )
            return max(0, int(ok.message_count or 0) - 1)
        except _BROKER_ERRORS as exc:
            raise PublishError(f"chord queue {self._queue!r}: {describe(exc)}") from exc
        finally:
            await _close(self._channel)


async def _close(channel: AbstractChannel | aiormq.abc.AbstractChannel) -> None:
    if not channel.is_closed:
        with contextlib.suppress(*CLOSE_ERRORS):
            await channel.close()
