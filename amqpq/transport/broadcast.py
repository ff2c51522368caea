"""The operations side of the transport: subscriptions, fire-and-forget publishes, streams.

- :class:`Subscription`: an exclusive, auto-delete queue bound to an exchange and
  consumed without acks (a worker's control queue, ``amqpq events``). The robust
  channel re-declares it, its bindings and its consumer after a reconnect.
- :class:`FireAndForget`: publishes on a channel without confirms and without
  ``mandatory``: the call returns once the frame is handed to the socket, so
  events and control replies never wait on the broker.
- :class:`StreamReader`: reads a stream queue from an offset (``first``) with a
  prefetch and manual acks, as RabbitMQ requires for streams.

As everywhere in ``amqpq.transport``, aio-pika stays inside this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.errors import BrokerError, PublishError, UnroutableError
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.aio_mapping import CLOSE_ERRORS, from_amqp_properties
from amqpq.wire import TRANSIENT_QUEUE_ARGUMENTS

__all__ = ["FireAndForget", "MessageCallback", "StreamReader", "Subscription", "exchange_exists"]

log = logging.getLogger("amqpq.transport")

MessageCallback = Callable[[bytes, MessageProperties, str], Awaitable[None] | None]
"""``(body, properties, routing_key)``."""

_PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    *CLOSE_ERRORS,
    aiormq.exceptions.AMQPError,
    RuntimeError,
)


async def _close(channel: AbstractChannel | None) -> None:
    if channel is not None and not channel.is_closed:
        with contextlib.suppress(*CLOSE_ERRORS):
            await channel.close()


def _dispatch(callback: MessageCallback, body: bytes, props: MessageProperties, key: str) -> None:
    try:
        result = callback(body, props, key)
    except Exception:
        log.exception("a message callback raised; message dropped")
        return
    if asyncio.iscoroutine(result):
        task = asyncio.ensure_future(result)
        _BACKGROUND.add(task)
        task.add_done_callback(_finished)


_BACKGROUND: set[asyncio.Future[Any]] = set()


def _finished(task: asyncio.Future[Any]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("a message callback failed", exc_info=task.exception())


class Subscription:
    """An exclusive auto-delete queue named ``queue`` bound to ``exchange`` (no acks)."""

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        exchange: str,
        queue: str,
        routing_keys: Sequence[str] = ("",),
        on_message: MessageCallback,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        self._broker = broker
        self.exchange = exchange
        self.queue_name = queue
        self._keys = tuple(routing_keys) or ("",)
        self._on_message = on_message
        self._arguments = dict(arguments or {})
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None

    async def start(self, *, consumer_tag: str | None = None) -> None:
        """Declare, bind and consume; :class:`BrokerError` when the exchange is missing."""
        connection = await self._broker.connect()
        channel = self._channel = await connection.channel(publisher_confirms=False)
        try:
            queue = await channel.declare_queue(
                self.queue_name,
                exclusive=True,
                auto_delete=True,
                arguments={**TRANSIENT_QUEUE_ARGUMENTS, **self._arguments},
            )
            for key in self._keys:
                await queue.bind(self.exchange, routing_key=key)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            self._channel = None
            raise BrokerError(
                f"exchange {self.exchange!r} does not exist: declare the topology "
                "(amqpq topology apply)"
            ) from exc
        except aiormq.exceptions.AMQPChannelError as exc:
            self._channel = None
            raise BrokerError(f"cannot subscribe to {self.exchange!r}: {exc}") from exc
        callback = self._on_message

        def on_message(message: AbstractIncomingMessage) -> None:
            _dispatch(
                callback,
                message.body,
                from_amqp_properties(message.properties),
                message.routing_key or "",
            )

        await queue.consume(on_message, no_ack=True, consumer_tag=consumer_tag)
        self._queue = queue

    async def close(self) -> None:
        self._queue = None
        channel, self._channel = self._channel, None
        await _close(channel)


class FireAndForget:
    """Unconfirmed, non-mandatory publishes on a channel of their own.

    :meth:`publish` raises :class:`PublishError` when the connection is down (the
    caller drops the message); it never waits for the broker's answer. It writes
    straight to the underlying aiormq channel: events are published three times per
    task, so the per-message cost matters (docs/operations.md#events).
    """

    def __init__(self, broker: AsyncBroker) -> None:
        self._broker = broker
        self._channel: AbstractChannel | None = None
        self._raw: aiormq.Channel | None = None
        self._opening = asyncio.Lock()

    async def _get_raw(self) -> aiormq.Channel:
        raw = self._raw
        if raw is not None and not raw.is_closed:
            return raw
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                connection = await self._broker.connect()
                self._channel = await connection.channel(publisher_confirms=False)
            underlay = await self._channel.get_underlay_channel()
            assert isinstance(underlay, aiormq.Channel)  # the concrete one takes wait=
            self._raw = underlay
            return underlay

    async def publish(self, message: OutgoingMessage) -> None:
        props = message.properties
        try:
            raw = await self._get_raw()
            await raw.basic_publish(
                message.body,
                exchange=message.exchange,
                routing_key=message.routing_key,
                properties=aiormq.spec.Basic.Properties(
                    content_type=props.content_type,
                    content_encoding=props.content_encoding,
                    delivery_mode=props.delivery_mode,
                    correlation_id=props.correlation_id,
                    message_type=props.type,
                    headers=props.headers or None,
                    # aiormq draws a random uuid for a message without an id: skip that.
                    message_id=props.message_id or "-",
                ),
                mandatory=False,
                wait=False,  # queued for the socket: no drain future per message
            )
        except _PUBLISH_ERRORS as exc:
            self._raw = None
            raise PublishError(f"fire-and-forget publish failed: {exc!r}") from exc

    async def close(self) -> None:
        self._raw = None
        channel, self._channel = self._channel, None
        await _close(channel)


class StreamReader:
    """Consumes a stream queue from ``offset`` (``"first"``, ``"last"``, ``"next"`` or a number).

    ``on_record(body, properties, offset)`` is called in order; each message is acked
    after it (streams need acks to keep the prefetch window moving; nothing is removed).
    When ``on_record`` returns an awaitable, the ack waits for it: a reader that cannot
    keep up holds at most ``prefetch`` records.
    """

    def __init__(
        self,
        broker: AsyncBroker,
        queue: str,
        *,
        on_record: Callable[[bytes, MessageProperties, int | None], Awaitable[None] | None],
        offset: str | int | datetime = "first",
        prefetch: int = 500,
    ) -> None:
        self._broker = broker
        self.queue_name = queue
        self._on_record = on_record
        self._offset = offset
        self._prefetch = prefetch
        self._channel: AbstractChannel | None = None

    async def start(self, *, consumer_tag: str | None = None) -> None:
        connection = await self._broker.connect()
        channel = self._channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._prefetch, global_=False)
        try:
            queue = await channel.declare_queue(self.queue_name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            self._channel = None
            raise BrokerError(
                f"stream {self.queue_name!r} does not exist: declare the topology "
                "(amqpq topology apply)"
            ) from exc
        on_record = self._on_record

        async def on_message(message: AbstractIncomingMessage) -> None:
            offset = (message.headers or {}).get("x-stream-offset")
            try:
                pending = on_record(
                    message.body,
                    from_amqp_properties(message.properties),
                    offset if isinstance(offset, int) else None,
                )
                if pending is not None:
                    await pending
            except Exception:
                log.exception("a stream record of %s could not be handled", self.queue_name)
            with contextlib.suppress(*CLOSE_ERRORS):
                await message.ack()

        await queue.consume(
            on_message,
            no_ack=False,
            consumer_tag=consumer_tag,
            arguments={"x-stream-offset": self._offset},
        )

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        await _close(channel)


async def exchange_exists(broker: AsyncBroker, name: str) -> None:
    """Raise :class:`UnroutableError` when exchange ``name`` does not exist (passive declare)."""
    connection = await broker.connect()
    channel = await connection.channel(publisher_confirms=False)
    try:
        await channel.declare_exchange(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise UnroutableError(
            f"exchange {name!r} does not exist in vhost {broker.settings.vhost!r}: declare the "
            "topology first (amqpq topology apply, or start a worker)"
        ) from exc
    finally:
        await _close(channel)
