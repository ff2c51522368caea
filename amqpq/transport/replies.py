"""A worker's direct reply-to answers, on a connection of their own.

:class:`AioReplyPublisher` is the RabbitMQ :class:`~amqpq.transport.base.ReplyPublisher`.
On RabbitMQ 3.10 a reply to a direct reply-to address whose node is down crashes
the publishing channel, and the broker closes that channel's whole connection
(541 INTERNAL_ERROR). On the connection that consumes and acks, that requeued
every unacked delivery and ran the tasks again; here it only costs this
connection a reconnect, and the replies sent meanwhile are dropped (one log line
each: their callers time out, nothing runs twice).

Replies are unconfirmed and not mandatory, as before: a confirm would say nothing
the worker could act on (the task ran; a caller who left cannot be told).
"""

from __future__ import annotations

import logging
from typing import cast

import aiormq
from aio_pika.abc import AbstractChannel

from amqpq.codec import OutgoingMessage
from amqpq.settings import Settings
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.aio_mapping import CHANNEL_GONE_ERRORS, CLOSE_ERRORS, to_amqp_properties

__all__ = ["REPLIES_ROLE", "AioReplyPublisher"]

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
        channel, self._channel, self._underlay = self._channel, None, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except CLOSE_ERRORS:
                log.debug("closing the reply channel failed", exc_info=True)
        await self._broker.close()
