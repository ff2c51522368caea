"""A worker's direct reply-to answers, on a connection of their own.

:class:`AioReplyPublisher` is the RabbitMQ :class:`~amqpq.transport.base.ReplyPublisher`.
On RabbitMQ 3.10 a reply to a direct reply-to address whose node is down crashes
the publishing channel, and the broker closes that channel's whole connection
(541 INTERNAL_ERROR). On the connection that consumes and acks, that requeued
every unacked delivery and ran the tasks again; here it only costs this
connection a reconnect, and the replies sent meanwhile are dropped (one log line
each: their callers time out, nothing runs twice).

Replies are unconfirmed and not mandatory, as before: a confirm would say nothing
the worker could act on (the task ran; a caller who left cannot be told). So a
reply needs none of what aiormq's ``basic_publish`` does per message beyond
framing it (a lock and delivery tag for confirms, a timeout scope, a random
message id): :meth:`AioReplyPublisher.send` puts the framed reply on the
connection's write queue itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import cast

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq.abc import ChannelFrame
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from amqpq.codec import OutgoingMessage
from amqpq.settings import Settings
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.aio_mapping import CHANNEL_GONE_ERRORS, CLOSE_ERRORS, to_amqp_properties

__all__ = ["REPLIES_ROLE", "AioReplyPublisher", "CallerPresence"]

log = logging.getLogger("amqpq.transport")

REPLIES_ROLE = "worker-replies"
"""The reply connection's role: ``amqpq worker-replies <host>:<pid>`` in the management UI."""

# A channel or connection gone, or aio-pika between a close and the reconnect
# ("Connection was not opened"): the reply is dropped, never raised to the worker.
_DROPPED: tuple[type[BaseException], ...] = (
    *CHANNEL_GONE_ERRORS,
    aiormq.exceptions.AMQPError,
    RuntimeError,
)
_LOOKUP_ERRORS: tuple[type[BaseException], ...] = (*_DROPPED, TimeoutError)


class AioReplyPublisher:
    """Direct reply-to answers on a robust connection of their own, one per worker process.

    The robust connection reconnects by itself (failing over like the worker's) and
    its robust channel is restored with it; :meth:`send` never waits for that: while
    the channel is down, replies are dropped.
    """

    def __init__(self, settings: Settings, role: str = REPLIES_ROLE) -> None:
        self._broker = AsyncBroker(settings, role)
        self.name = self._broker.name
        self._channel: AbstractChannel | None = None
        self._underlay: aiormq.Channel | None = None
        self.dropped = 0
        self._callers = CallerPresence(self._lookup_channel)

    @property
    def skipped(self) -> int:
        """Replies not sent because their caller had gone (:meth:`caller_gone`)."""
        return self._callers.skipped

    def caller_gone(self, caller: str) -> bool:
        return self._callers.gone(caller)

    async def _lookup_channel(self) -> aiormq.Channel:
        underlay = await self._reopened()
        return cast(aiormq.Channel, await underlay.connection.channel(publisher_confirms=False))

    @property
    def reconnects(self) -> int:
        return self._broker.reconnects

    async def start(self) -> None:
        connection = await self._broker.connect()
        if self._channel is None or self._channel.is_closed:
            self._channel = await connection.channel(publisher_confirms=False)
        self._underlay = await self._reopened()

    async def send(self, message: OutgoingMessage) -> bool:
        try:
            underlay = self._underlay
            if underlay is None or underlay.is_closed:
                underlay = self._underlay = await self._reopened()
            if _FRAMED_WRITES:
                try:
                    underlay.write_queue.put_nowait(_framed(underlay, message))
                    return True
                except asyncio.QueueFull:  # the writer is behind: wait for room as aiormq does
                    pass
            await underlay.basic_publish(
                message.body,
                exchange=message.exchange,
                routing_key=message.routing_key,
                properties=to_amqp_properties(message),
                mandatory=False,
                wait=False,
            )
        except _DROPPED as exc:
            self._underlay = None
            self.dropped += 1
            log.warning(
                "reply dropped id=%s reply_to=%s: the reply connection is down (%s); "
                "the task's ack goes ahead",
                message.properties.correlation_id,
                message.routing_key,
                type(exc).__name__,
            )
            return False
        return True

    async def _reopened(self) -> aiormq.Channel:
        """The robust channel's current channel, once aio-pika restored it (no waiting:
        aio-pika's own accessor waits for a reconnect, which held every task's ack behind
        the reply connection's back-off)."""
        if self._channel is None:
            raise aiormq.exceptions.ChannelInvalidStateError("the reply path is not open")
        if not self._broker.is_ready:
            raise aiormq.exceptions.ChannelInvalidStateError("the reply connection is down")
        underlay = await self._channel.get_underlay_channel()
        if underlay.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError("the reply channel is closed")
        return cast(aiormq.Channel, underlay)  # the concrete one takes ``wait=``

    async def close(self) -> None:
        await self._callers.close()
        channel, self._channel, self._underlay = self._channel, None, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except CLOSE_ERRORS:
                log.debug("closing the reply channel failed", exc_info=True)
        await self._broker.close()


class CallerPresence:
    """Which callers are still there to read a direct reply-to answer.

    A producer that consumes direct reply-to holds an exclusive queue on the same
    connection (:data:`~amqpq.wire.CALLER_QUEUE_PREFIX`) and names it in each task
    (:data:`~amqpq.wire.HEADER_CALLER`). Asked about another connection's exclusive
    queue, the broker answers RESOURCE_LOCKED while that connection is open and
    NOT_FOUND once it closed: the caller has gone, and every reply to it would be
    routed only to be dropped (a script that sent a thousand tasks and exited costs
    workers a thousand replies otherwise). One passive declare per caller, in the
    background, again after :attr:`RECHECK_AFTER` seconds while it is present; a
    reply never waits for one.
    """

    RECHECK_AFTER = 10.0
    _MAX_KNOWN = 10_000
    _TIMEOUT = 5.0

    def __init__(self, open_channel: Callable[[], Awaitable[aiormq.Channel]]) -> None:
        self._open_channel = open_channel
        self._channel: aiormq.Channel | None = None
        self._known: OrderedDict[str, tuple[bool, float]] = OrderedDict()  # gone, checked at
        self._checking: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_at_a_time = asyncio.Lock()  # a NOT_FOUND closes the channel under the others
        self.skipped = 0

    def gone(self, caller: str) -> bool:
        known = self._known.get(caller)
        if known is not None:
            gone, checked = known
            if gone:
                self.skipped += 1
                return True
            if time.monotonic() - checked < self.RECHECK_AFTER:
                return False
        if caller not in self._checking:
            self._checking.add(caller)
            task = asyncio.get_running_loop().create_task(self._check(caller))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return False

    async def _check(self, caller: str) -> None:
        try:
            async with self._one_at_a_time:
                gone = await self._ask(caller)
        finally:
            self._checking.discard(caller)
        if gone is None:  # no answer: asked again with the next reply
            return
        known = self._known
        known[caller] = (gone, time.monotonic())
        known.move_to_end(caller)
        if len(known) > self._MAX_KNOWN:
            known.popitem(last=False)
        if gone:
            log.info("caller %s has gone (its connection closed): its replies are skipped", caller)

    async def _ask(self, caller: str) -> bool | None:
        """True: gone; False: present; None: the broker could not be asked."""
        try:
            channel = self._channel
            if channel is None or channel.is_closed:
                channel = self._channel = await self._open_channel()
            await channel.queue_declare(caller, passive=True, timeout=self._TIMEOUT)
        except aiormq.exceptions.ChannelLockedResource:
            return False  # exclusive to its producer's connection, which is open
        except aiormq.exceptions.ChannelNotFoundEntity:
            return True
        except _LOOKUP_ERRORS as exc:
            log.debug("caller %s not looked up: %s", caller, type(exc).__name__)
            return None
        return False  # declared without exclusivity: not ours to judge, replies go on

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except CLOSE_ERRORS:
                log.debug("closing the caller lookup channel failed", exc_info=True)


# aiormq's frame writer interface (aiormq >= 7): without it, replies go through basic_publish.
_FRAMED_WRITES = hasattr(ChannelFrame, "marshall") and hasattr(aiormq.Channel, "_split_body")


def _framed(channel: aiormq.Channel, message: OutgoingMessage) -> ChannelFrame:
    """``message`` as one write of its publish, header and body frames on ``channel``."""
    body = message.body
    return ChannelFrame.marshall(
        channel_number=channel.number,
        frames=[
            Basic.Publish(exchange=message.exchange, routing_key=message.routing_key),
            ContentHeader(properties=to_amqp_properties(message), body_size=len(body)),
            *channel._split_body(body),
        ],
    )
