"""Consuming on aio-pika: deliveries free of the client library, consumers, a confirming publisher.

The RabbitMQ implementations of the consuming protocols of :mod:`amqpq.transport.base`:
:class:`AioDelivery`, :class:`AioQueueConsumer` and :class:`AioConfirmingPublisher`
(defined in :mod:`amqpq.transport.aio`, where the producers publish through it too,
and re-exported here). The worker package types against the protocols and
constructs these; no aio-pika or aiormq type leaves the transport package.

Acks are late and may be stale: when the connection or channel dropped while a
task ran, the broker has already requeued the message, and acking it on the new
channel would ack some other message (or close the channel with an unknown
delivery tag). :meth:`AioDelivery.ack` notices the closed channel and drops the ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

import aiormq
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import ChannelClosed
from aiormq.abc import DeliveredMessage

from amqpq.codec import MessageProperties
from amqpq.errors import BrokerError, BrokerUnreachableError
from amqpq.transport.aio import AioConfirmingPublisher, AsyncBroker
from amqpq.transport.aio_mapping import (
    CHANNEL_GONE_ERRORS,
    CLOSE_ERRORS,
    CONNECTION_ERRORS,
    describe,
    from_amqp_properties,
)
from amqpq.transport.base import DeliveryHandler
from amqpq.wire import deliveries_before

__all__ = ["AioConfirmingPublisher", "AioDelivery", "AioQueueConsumer", "connection_lost"]

log = logging.getLogger("amqpq.transport")

# Settling a delivery whose channel is gone raises one of these: the broker requeued it.
_SETTLE_ERRORS = CHANNEL_GONE_ERRORS
# An ack is queued for aiormq's writer, not waited for until written: a closed channel
# still raises at once, and the written bytes would say no more (the broker may never
# read them either). Waiting cost a future and a loop turn per message.
_NO_WRITE_WAIT: dict[str, Any] = (
    {"wait": False} if "wait" in inspect.signature(aiormq.Channel.basic_ack).parameters else {}
)


def connection_lost(exc: BaseException) -> str | None:
    """Why ``exc`` means a connection was lost or no address answered, in a few words;
    None when it is anything else (a refusal of a queue, a conflict, a bug).

    A worker starting up starts again after a loss, instead of exiting.
    """
    if isinstance(exc, BrokerUnreachableError):
        return str(exc)
    if isinstance(exc, CONNECTION_ERRORS):
        return describe(exc)
    if isinstance(exc, RuntimeError):
        # aio-pika ("Connection was not opened") and aiormq ("<Connection ...> closed")
        # refuse new channels between a close and the reconnect.
        text = str(exc)
        if text == "Connection was not opened" or text.endswith(" closed"):
            return "the connection closed"
    return None


class AioDelivery:
    """One consumed message: body, properties, where it came from, and how to settle it."""

    __slots__ = (
        "_acks",
        "_channel",
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

    def __init__(
        self, message: DeliveredMessage, queue: str, acks: _AckCoalescer | None = None
    ) -> None:
        # Straight from aiormq's frames: aio-pika's IncomingMessage would decode every
        # property again through guarded attribute writes (a visible share of a drain).
        self._channel = cast(aiormq.Channel, message.channel)
        self._acks = acks
        self.body: bytes = message.body
        self.properties: MessageProperties = from_amqp_properties(message.header.properties)
        deliver = cast(aiormq.spec.Basic.Deliver, message.delivery)  # a consumer gets these
        self.exchange: str = deliver.exchange or ""
        self.routing_key: str = deliver.routing_key or ""
        self.redelivered: bool = bool(deliver.redelivered)
        self.queue = queue
        self.delivery_tag: int | None = deliver.delivery_tag
        self.consumer_tag: str | None = deliver.consumer_tag
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
            return not self._channel.is_closed
        except aiormq.exceptions.ChannelInvalidStateError:
            return False

    @property
    def delivery_count(self) -> int:
        return deliveries_before(self.properties.headers, self.redelivered)

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
        acks = self._acks
        try:
            if acks is not None:
                if how == "ack" and acks.worth_waiting(self):
                    if await acks.ack(self):
                        return True
                    raise ChannelClosed("the channel closed before the ack was sent")
                acks.settling(self)
            tag = self.delivery_tag
            assert tag is not None
            if how == "ack":
                await self._channel.basic_ack(tag, **_NO_WRITE_WAIT)
            elif how == "nack":
                await self._channel.basic_nack(tag, requeue=requeue)
            else:
                await self._channel.basic_reject(tag, requeue=requeue)
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


class _AckCoalescer:
    """The acks of one consuming channel, sent as one ``basic.ack(multiple)`` when they can be.

    A multiple ack with tag T settles every unsettled delivery up to T, so it is only
    sent when each of those is being acked now; anything else is acked on its own.
    One task sends, in order, and takes a delivery out of ``unsettled`` right before its
    frame is queued, so a multiple ack never covers a tag that some other frame (an
    earlier single ack, a nack, a reject) still has to settle. With one delivery in
    flight (prefetch 1) there is nothing to coalesce: the ack goes out directly.
    """

    __slots__ = ("_pending", "_sender", "_wake", "unsettled")

    def __init__(self) -> None:
        self.unsettled: dict[int, None] = {}  # delivery tags, ascending
        self._pending: dict[int, tuple[AioDelivery, asyncio.Future[bool]]] = {}
        self._wake: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    def delivered(self, delivery: AioDelivery) -> None:
        if delivery.delivery_tag is not None:
            self.unsettled[delivery.delivery_tag] = None

    def worth_waiting(self, delivery: AioDelivery) -> bool:
        """True when other deliveries are unsettled: the ack may join a multiple one."""
        tag = delivery.delivery_tag
        return tag is not None and tag in self.unsettled and len(self.unsettled) > 1

    def settling(self, delivery: AioDelivery) -> None:
        """Its frame is about to be queued (called right before, with no await between)."""
        if delivery.delivery_tag is not None:
            self.unsettled.pop(delivery.delivery_tag, None)

    async def ack(self, delivery: AioDelivery) -> bool:
        assert delivery.delivery_tag is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending[delivery.delivery_tag] = (delivery, future)
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send())
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return await future

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wake = loop.create_future()
                try:
                    await asyncio.wait_for(self._wake, 1.0)
                except TimeoutError:
                    if not self._pending:
                        return
                continue
            pending, self._pending = self._pending, {}
            top = None
            for tag in self.unsettled:  # the oldest unsettled tags, all acked now
                if tag not in pending:
                    break
                top = tag
            covered = [] if top is None else [t for t in pending if t <= top]
            if len(covered) > 1:
                for tag in covered:
                    self.unsettled.pop(tag, None)
                last, _ = pending[top]  # type: ignore[index]
                ok = await self._ack_frame(last, multiple=True)
                for tag in covered:
                    _resolve(pending.pop(tag)[1], ok)
            for tag in sorted(pending):
                delivery, future = pending[tag]
                self.unsettled.pop(tag, None)
                _resolve(future, await self._ack_frame(delivery, multiple=False))

    @staticmethod
    async def _ack_frame(delivery: AioDelivery, *, multiple: bool) -> bool:
        try:
            assert delivery.delivery_tag is not None
            await delivery._channel.basic_ack(
                delivery.delivery_tag, multiple=multiple, **_NO_WRITE_WAIT
            )
        except _SETTLE_ERRORS:
            return False
        return True

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        for _, future in self._pending.values():
            _resolve(future, False)
        self._pending.clear()


async def _nothing() -> None:
    return None


def _resolve(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


class AioQueueConsumer:
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
        self._consumers: list[tuple[str, str]] = []  # (queue, consumer tag)
        self.tasks: set[asyncio.Task[None]] = set()  # deliveries being handled
        # Per underlying channel: a reconnect brings a new one, whose tags start again at 1.
        self._acks: dict[int, tuple[Any, _AckCoalescer]] = {}

    @property
    def consumer_tags(self) -> list[str]:
        return [tag for _, tag in self._consumers]

    async def start(self, queues: Sequence[str], tag_for: Callable[[str], str]) -> None:
        connection = await self._broker.connect()
        channel = self._channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._prefetch, global_=False)
        for name in queues:
            try:
                await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity as exc:
                raise BrokerError(
                    f"queue {name!r} does not exist on the broker: declare it with "
                    "`amqpq topology apply` or start the worker without --no-declare"
                ) from exc
            except aiormq.exceptions.ChannelAccessRefused as exc:
                raise BrokerError(f"access to queue {name!r} refused: {exc}") from exc
            self._consumers.append((name, tag_for(name)))
        # Consumers live on the aiormq channel underneath, so deliveries skip aio-pika's
        # IncomingMessage and its extra task; after a reconnect the robust channel
        # restores the QoS and the passive declares, and ``_consume`` registers the
        # consumers again under the same tags.
        await self._consume()
        reopened = getattr(channel, "reopen_callbacks", None)
        if reopened is not None:
            reopened.add(self._on_reopen)

    async def _consume(self) -> None:
        assert self._channel is not None
        underlay = await self._channel.get_underlay_channel()
        for name, tag in self._consumers:
            await underlay.basic_consume(name, self._callback_for(name), consumer_tag=tag)

    async def _on_reopen(self, _channel: Any) -> None:
        # aio-pika gathers reopen callbacks with return_exceptions: say what went wrong here.
        try:
            await self._consume()
        except Exception as exc:
            log.error("consuming again after a reconnect failed: %r", exc)
            raise

    def _callback_for(self, queue: str) -> Callable[[DeliveredMessage], Coroutine[Any, Any, None]]:
        # The handler runs in a task of our own, not in aiormq's consumer task, which is
        # cancelled when the channel closes. A task that outlives a dropped connection
        # finishes, replies, and finds its ack stale.
        handler = self._handler
        tasks = self.tasks
        create_task = asyncio.get_running_loop().create_task
        acks_for = self._acks_for
        coalesce = self._prefetch > 1

        def on_message(message: DeliveredMessage) -> Coroutine[Any, Any, None]:
            acks = acks_for(message.channel) if coalesce else None
            delivery = AioDelivery(message, queue, acks)
            if acks is not None:
                acks.delivered(delivery)
            task = create_task(handler(delivery))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return _nothing()  # what aiormq runs as its consumer task

        return on_message

    def _acks_for(self, channel: Any) -> _AckCoalescer:
        found = self._acks.get(id(channel))
        if found is not None and found[0] is channel:
            return found[1]
        for key, (old, coalescer) in list(self._acks.items()):
            if old.is_closed:  # the channel of before a reconnect: its acks fail anyway
                coalescer.close()
                del self._acks[key]
        coalescer = _AckCoalescer()
        self._acks[id(channel)] = (channel, coalescer)
        return coalescer

    async def cancel(self) -> None:
        """Stop receiving (basic.cancel); deliveries already received can still be settled."""
        consumers, self._consumers = self._consumers, []
        channel = self._channel
        if channel is None or not consumers:
            return
        for _, tag in consumers:
            try:
                underlay = await asyncio.wait_for(channel.get_underlay_channel(), 5)
                await underlay.basic_cancel(tag, timeout=5)
            except CLOSE_ERRORS as exc:
                log.warning("cancelling consumer %s failed: %s", tag, type(exc).__name__)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        for _, coalescer in self._acks.values():
            coalescer.close()
        self._acks.clear()
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*CLOSE_ERRORS):
                await channel.close()
