"""Consuming on aio-pika: deliveries free of the client library, consumers, a confirming publisher.

The worker package talks only to :class:`Delivery`, :class:`QueueConsumer` and
:class:`ConfirmingPublisher`; every aio-pika and aiormq type stays in this module.

Acks are late and may be stale: when the connection or channel dropped while a
task ran, the broker has already requeued the message, and acking it on the new
channel would ack some other message (or close the channel with an unknown
delivery tag). :meth:`Delivery.ack` notices the closed channel and drops the ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelClosed, MessageProcessError

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.errors import BrokerError, PublishError
from amqpq.transport.aio import CONNECTION_ERRORS, AsyncBroker, from_aio_properties, publish_on

__all__ = ["ConfirmingPublisher", "Delivery", "DeliveryHandler", "QueueConsumer"]

log = logging.getLogger("amqpq.transport")

# Settling a delivery whose channel is gone raises one of these: the broker requeued it.
_SETTLE_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    ChannelClosed,
    aiormq.exceptions.ChannelInvalidStateError,
    MessageProcessError,
)
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (*_SETTLE_ERRORS, TimeoutError)
_PUBLISH_RETRY_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, ChannelClosed)


class Delivery:
    """One consumed message: body, properties, where it came from, and how to settle it."""

    __slots__ = (
        "_message",
        "body",
        "consumer_tag",
        "delivery_tag",
        "exchange",
        "properties",
        "queue",
        "redelivered",
        "routing_key",
        "settled",
    )

    def __init__(self, message: AbstractIncomingMessage, queue: str) -> None:
        self._message = message
        self.body: bytes = message.body
        self.properties: MessageProperties = from_aio_properties(message)
        self.exchange: str = message.exchange or ""
        self.routing_key: str = message.routing_key or ""
        self.redelivered: bool = bool(message.redelivered)
        self.queue = queue
        self.delivery_tag: int | None = message.delivery_tag
        self.consumer_tag: str | None = message.consumer_tag
        self.settled = False

    def __repr__(self) -> str:
        return (
            f"<Delivery queue={self.queue} tag={self.delivery_tag} "
            f"id={self.properties.message_id} redelivered={self.redelivered}>"
        )

    @property
    def channel_open(self) -> bool:
        """False once the channel it came on closed: the broker took the message back."""
        try:
            return not self._message.channel.is_closed
        except aiormq.exceptions.ChannelInvalidStateError:
            return False

    @property
    def delivery_count(self) -> int:
        """How many times the broker delivered it before (quorum queues' ``x-delivery-count``)."""
        value = self.properties.headers.get("x-delivery-count")
        return value if isinstance(value, int) else (1 if self.redelivered else 0)

    async def ack(self) -> bool:
        """Ack; False when the channel it came on is gone (the broker requeued it)."""
        return await self._settle("ack")

    async def nack(self, requeue: bool = True) -> bool:
        """Negative ack; ``requeue=True`` puts it back for redelivery."""
        return await self._settle("nack", requeue=requeue)

    async def reject(self, requeue: bool = False) -> bool:
        """Reject; without requeue the broker dead-letters it per the queue's arguments."""
        return await self._settle("reject", requeue=requeue)

    async def _settle(self, how: str, requeue: bool = False) -> bool:
        if self.settled:
            return False
        self.settled = True
        try:
            if how == "ack":
                await self._message.ack()
            elif how == "nack":
                await self._message.nack(requeue=requeue)
            else:
                await self._message.reject(requeue=requeue)
        except _SETTLE_ERRORS as exc:
            log.warning(
                "%s dropped: the channel closed since delivery, the broker requeued the "
                "message queue=%s id=%s (%s)",
                how,
                self.queue,
                self.properties.message_id,
                type(exc).__name__,
            )
            return False
        return True


DeliveryHandler = Callable[[Delivery], Coroutine[Any, Any, None]]


class QueueConsumer:
    """Consumes several queues on one channel, with per-consumer prefetch (``global_=False``).

    Quorum queues refuse global QoS, so the prefetch applies to each queue's
    consumer. The channel is robust: after a reconnect aio-pika re-declares the
    queues passively, re-applies the QoS and re-registers the consumers under
    the same tags.
    """

    def __init__(self, broker: AsyncBroker, *, prefetch: int, handler: DeliveryHandler) -> None:
        self._broker = broker
        self._prefetch = prefetch
        self._handler = handler
        self._channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self.tasks: set[asyncio.Task[None]] = set()  # deliveries being handled

    @property
    def consumer_tags(self) -> list[str]:
        return [tag for _, tag in self._consumers]

    async def start(self, queues: Sequence[str], tag_for: Callable[[str], str]) -> None:
        connection = await self._broker.connect()
        channel = self._channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._prefetch, global_=False)
        for name in queues:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity as exc:
                raise BrokerError(
                    f"queue {name!r} does not exist on the broker: declare it with "
                    "`amqpq topology apply` or start the worker without --no-declare"
                ) from exc
            except aiormq.exceptions.ChannelAccessRefused as exc:
                raise BrokerError(f"access to queue {name!r} refused: {exc}") from exc
            tag = await queue.consume(self._callback_for(name), consumer_tag=tag_for(name))
            self._consumers.append((queue, tag))

    def _callback_for(self, queue: str) -> Callable[[AbstractIncomingMessage], None]:
        # A plain function, not a coroutine: the handler runs in a task of our own, not in
        # aiormq's consumer task, which is cancelled when the channel closes. A task that
        # outlives a dropped connection finishes, replies, and finds its ack stale.
        handler = self._handler
        tasks = self.tasks
        create_task = asyncio.get_running_loop().create_task

        def on_message(message: AbstractIncomingMessage) -> None:
            task = create_task(handler(Delivery(message, queue)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        return on_message

    async def cancel(self) -> None:
        """Stop receiving (basic.cancel); deliveries already received can still be settled."""
        consumers, self._consumers = self._consumers, []
        for queue, tag in consumers:
            try:
                await queue.cancel(tag, timeout=5)
            except _CLOSE_ERRORS as exc:
                log.warning("cancelling consumer %s failed: %s", tag, type(exc).__name__)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*_CLOSE_ERRORS):
                await channel.close()


class ConfirmingPublisher:
    """Publishes with confirms on a channel of its own.

    Dead letters and retries go to exchanges that may not exist (a worker
    started before ``topology apply``): a publish to a missing exchange closes
    its channel, so those get a channel apart from the replies.
    """

    def __init__(self, broker: AsyncBroker) -> None:
        self._broker = broker
        self._channel: AbstractChannel | None = None
        self._opening: asyncio.Lock = asyncio.Lock()

    async def _get_channel(self) -> AbstractChannel:
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                self._channel = await self._broker.channel()
            return self._channel

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> None:
        """Publish and wait for the confirm; retried once after a connection loss.

        Raises :class:`~amqpq.errors.UnroutableError` (returned or no such exchange),
        :class:`~amqpq.errors.PublishNackedError` or :class:`~amqpq.errors.PublishError`.
        """
        for attempt in (1, 2):
            try:
                channel = await self._get_channel()
                await publish_on(channel, message, timeout=timeout)
                return
            except _PUBLISH_RETRY_ERRORS as exc:
                self._channel = None
                if attempt == 2:
                    raise PublishError(f"publish failed, connection lost: {exc!r}") from exc
                await self._broker.wait_ready(timeout or 30.0)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*_CLOSE_ERRORS):
                await channel.close()
