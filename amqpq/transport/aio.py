"""The asyncio transport on aio-pika: one robust connection, confirmed mandatory publishes.

Library errors are mapped here to :mod:`amqpq.errors`; nothing above this
module sees an aio-pika or aiormq exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from yarl import URL

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.errors import (
    BrokerError,
    BrokerUnreachableError,
    PublishError,
    PublishNackedError,
    UnroutableError,
)
from amqpq.settings import BrokerAddress, Settings, connection_name
from amqpq.transport.tls import ssl_context_for

__all__ = [
    "DIRECT_REPLY_TO",
    "AsyncBroker",
    "AsyncSendChannel",
    "ReplyChannel",
    "from_aio_properties",
    "ssl_context_for",
    "to_aio_message",
]

log = logging.getLogger("amqpq.transport")

# Errors after which a publish may be retried once on the recovered connection.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.ConnectionClosed,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.AMQPConnectionError,
    ConnectionError,
    asyncio.IncompleteReadError,
)


def _url_for(address: BrokerAddress, settings: Settings, name: str) -> URL:
    query = {
        "heartbeat": str(settings.heartbeat),
        "name": name,
    }
    return URL.build(
        scheme=address.scheme,
        host=address.host,
        port=address.port,
        user=address.username,
        password=address.password,
        path="/" + address.vhost,
        query=query,
    )


def to_aio_message(message: OutgoingMessage) -> aio_pika.Message:
    props = message.properties
    return aio_pika.Message(
        body=message.body,
        headers=props.headers or None,
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        delivery_mode=aio_pika.DeliveryMode(props.delivery_mode),
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        # AMQP carries milliseconds as text; aio-pika takes seconds.
        expiration=int(props.expiration) / 1000 if props.expiration else None,
        message_id=props.message_id,
        timestamp=props.timestamp,
        type=props.type,
        app_id=props.app_id,
    )


def to_amqp_properties(message: OutgoingMessage) -> aiormq.spec.Basic.Properties:
    """The wire properties of ``message``, for publishing on a bare aiormq channel."""
    props = message.properties
    return aiormq.spec.Basic.Properties(
        headers=props.headers or None,
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


def from_aio_properties(message: aio_pika.abc.AbstractIncomingMessage) -> MessageProperties:
    return MessageProperties(
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=int(message.delivery_mode or 1),
        priority=message.priority,
        timestamp=message.timestamp,
        expiration=str(message.expiration) if message.expiration is not None else None,
        type=message.type,
        app_id=message.app_id,
        headers=dict(message.headers or {}),
    )


class AsyncBroker:
    """One robust connection per role and process, trying the configured URLs in order."""

    def __init__(self, settings: Settings, role: str) -> None:
        self.settings = settings
        self.role = role
        self.name = connection_name(role)
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        self.reconnects = 0
        self._background: set[asyncio.Future[Any]] = set()
        self.on_reconnect: list[Callable[[], Awaitable[None] | None]] = []
        self._address_index = 0
        self._failover_task: asyncio.Task[None] | None = None

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BrokerError("not connected")
        return self._connection

    async def connect(self) -> AbstractRobustConnection:
        async with self._lock:
            if self._connection is not None and not self._connection.is_closed:
                return self._connection
            errors: list[str] = []
            for index, address in enumerate(self.settings.addresses):
                try:
                    connection = await aio_pika.connect_robust(
                        _url_for(address, self.settings, self.name),
                        timeout=self.settings.connect_timeout,
                        ssl_context=ssl_context_for(self.settings) if address.tls else None,
                        client_properties={"connection_name": self.name, "product": "amqpq"},
                        reconnect_interval=1.0,
                    )
                except aiormq.exceptions.ProbableAuthenticationError as exc:
                    errors.append(f"{address.display}: refused the credentials or vhost ({exc})")
                except aiormq.exceptions.AuthenticationError as exc:
                    errors.append(f"{address.display}: authentication failed ({exc})")
                except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                    errors.append(f"{address.display}: {_describe(exc)}")
                else:
                    connection.reconnect_callbacks.add(self._reconnected)
                    if len(self.settings.addresses) > 1:
                        connection.close_callbacks.add(self._connection_lost)
                    self._address_index = index
                    self._connection = connection
                    return connection
            raise BrokerUnreachableError("cannot connect to RabbitMQ: " + "; ".join(errors))

    def _reconnected(self, *_: Any) -> None:
        self.reconnects += 1
        log.warning("reconnected to RabbitMQ (%s), reconnects=%d", self.name, self.reconnects)
        for callback in self.on_reconnect:
            result = callback()
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _connection_lost(self, connection: Any, *_: Any) -> None:
        # aio-pika's robust connection retries the URL it first connected to. With several
        # addresses (a cluster), point it at the next one on every loss and keep rotating
        # while no attempt succeeds; its retry loop reads ``connection.url`` on each attempt.
        if connection.is_closed or getattr(connection, "_close_called", False):
            return
        if self._failover_task is None or self._failover_task.done():
            self._failover_task = asyncio.ensure_future(self._rotate_addresses(connection))

    async def _rotate_addresses(self, connection: Any) -> None:
        addresses = self.settings.addresses
        interval = 1.5  # a little more than reconnect_interval: one attempt per address
        while not connection.is_closed and not connection.connected.is_set():
            self._address_index = (self._address_index + 1) % len(addresses)
            address = addresses[self._address_index]
            connection.url = _url_for(address, self.settings, self.name)
            log.warning("connection lost (%s); next attempt: %s", self.name, address.display)
            try:
                await asyncio.wait_for(connection.connected.wait(), interval)
            except TimeoutError:
                continue

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the (robust) connection is up again; BrokerUnreachableError after timeout."""
        await self._wait_connected(timeout)

    async def channel(self, prefetch: int | None = None) -> AbstractChannel:
        """A new channel with publisher confirms; per-consumer QoS (quorum queues refuse global)."""
        connection = await self.connect()
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        except RuntimeError as exc:
            # Between a close and the reconnect, aio-pika ("Connection was not opened") and
            # aiormq ("<Connection ...> closed", before the robust connection noticed)
            # refuse new channels: a lost connection, for the callers' retry after the
            # reconnect, not a bug.
            text = str(exc)
            if text != "Connection was not opened" and not text.endswith(" closed"):
                raise
            raise aiormq.exceptions.ChannelInvalidStateError(text) from exc
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch, global_=False)
        return channel

    async def _publisher(self) -> AbstractChannel:
        if self._publish_channel is None or self._publish_channel.is_closed:
            self._publish_channel = await self.channel()
        return self._publish_channel

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> None:
        """Publish and wait for the broker's confirm. Persistent, mandatory, retried once
        after a connection loss (at-least-once: consumers deduplicate by message id)."""
        for attempt in (1, 2):
            try:
                channel = await self._publisher()
                await publish_on(channel, message, timeout=timeout)
                return
            except CONNECTION_ERRORS as exc:
                self._publish_channel = None
                if attempt == 2:
                    raise PublishError(
                        f"publish failed, connection lost: {_describe(exc)}"
                    ) from exc
                await self._wait_connected(timeout or 30.0)

    async def _wait_connected(self, timeout: float) -> None:
        connection = await self.connect()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                await asyncio.wait_for(connection.ready(), max(0.0, deadline - loop.time()))
                # Right after a close, ``connected`` can still be set while the connection
                # underneath is already closed: wait for the new one.
                transport = connection.transport
                if transport is not None and not transport.connection.is_closed:
                    return
                if loop.time() > deadline:
                    raise TimeoutError
                await asyncio.sleep(0.05)
        except TimeoutError as exc:
            raise BrokerUnreachableError(
                f"RabbitMQ did not come back within {timeout:.0f}s"
            ) from exc

    async def close(self) -> None:
        if self._failover_task is not None:
            self._failover_task.cancel()
        connection, self._connection = self._connection, None
        self._publish_channel = None
        if connection is not None and not connection.is_closed:
            await connection.close()


async def publish_on(
    channel: AbstractChannel, message: OutgoingMessage, *, timeout: float | None = 30.0
) -> None:
    """Publish on a confirming channel, mapping returns and nacks to amqpq errors."""
    exchange = (
        channel.default_exchange
        if message.exchange == ""
        else await _exchange(channel, message.exchange)
    )
    try:
        # One deadline around the whole publish (a timer, no task). Given a timeout,
        # aiormq wraps each step (lock, write, confirm) in asyncio.wait_for: a task and
        # extra loop iterations each, before the frames even reach the socket.
        async with asyncio.timeout(timeout):
            await exchange.publish(
                to_aio_message(message),
                routing_key=message.routing_key,
                mandatory=message.mandatory,
                timeout=None,
            )
    except aiormq.exceptions.PublishError as exc:
        raise UnroutableError(
            f"no queue is bound for exchange {message.exchange!r} with routing key "
            f"{message.routing_key!r}: the message was returned ({_reply_text(exc)})"
        ) from exc
    except aiormq.exceptions.DeliveryError as exc:
        raise PublishNackedError(
            f"RabbitMQ refused the message for exchange {message.exchange!r} "
            f"(e.g. a full queue with overflow=reject-publish): {exc}"
        ) from exc
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise UnroutableError(f"exchange {message.exchange!r} does not exist: {exc}") from exc
    except TimeoutError as exc:
        raise PublishError(f"no publisher confirm within {timeout}s") from exc


async def _exchange(channel: AbstractChannel, name: str) -> aio_pika.abc.AbstractExchange:
    # A passive-free handle: publishing does not need the exchange's type.
    return aio_pika.Exchange(channel, name, aio_pika.ExchangeType.DIRECT, durable=True)


def _reply_text(exc: aiormq.exceptions.PublishError) -> str:
    delivery = getattr(exc.message, "delivery", None)
    return str(getattr(delivery, "reply_text", "NO_ROUTE"))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return text


DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
ReplyCallback = Callable[[str | None, bytes], None]
LostCallback = Callable[[str], None]
# Publishing with reply_to=amq.rabbitmq.reply-to on a channel whose reply consumer is gone
# (it was recovered without it) closes the channel with PRECONDITION_FAILED: retry once.
_RPC_RETRY_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    aiormq.exceptions.ChannelPreconditionFailed,
)


class ReplyChannel:
    """A confirming publish channel that also consumes RabbitMQ direct reply-to.

    RabbitMQ delivers a reply sent to ``amq.rabbitmq.reply-to.*`` only to the
    consumer on the very channel that published the request, so both share one
    channel. When the robust connection recovers, the channel is new, its reply
    address changes, and replies still on their way to the old one are lost:
    ``on_lost`` is told, and :attr:`generation` moves on.
    """

    def __init__(
        self, broker: AsyncBroker, *, on_reply: ReplyCallback, on_lost: LostCallback
    ) -> None:
        self.broker = broker
        self._on_reply = on_reply
        self._on_lost = on_lost
        self._channel: AbstractChannel | None = None
        self._consuming_on: Any = None
        self._aux: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        # One scan of the side channel at a time: a scan ends with a multiple=True
        # nack that would requeue another scan's not-yet-acked finds.
        self._collect_lock = asyncio.Lock()
        self._known_exchanges: set[str] = set()
        self._known_queues: set[str] = set()
        self.generation = 0

    async def _current(self) -> tuple[AbstractChannel, int] | None:
        channel = self._channel
        if channel is None or channel.is_closed:
            return None
        try:
            underlay = await channel.get_underlay_channel()
        except aiormq.exceptions.ChannelInvalidStateError:
            return None
        if underlay is not self._consuming_on or underlay.is_closed:
            return None
        return channel, self.generation

    async def ready(self) -> tuple[AbstractChannel, int]:
        """The publishing channel with its reply consumer, and its generation."""
        current = await self._current()
        if current is not None:
            return current
        async with self._lock:
            current = await self._current()
            if current is not None:
                return current
            if self._consuming_on is not None:
                self._consuming_on = None
                self._on_lost("the connection to RabbitMQ was lost")
            if self._channel is None or self._channel.is_closed:
                self._channel = await self.broker.channel()
            underlay = await self._channel.get_underlay_channel()
            await underlay.basic_consume(DIRECT_REPLY_TO, self._deliver, no_ack=True)
            self._consuming_on = underlay
            self.generation += 1
            return self._channel, self.generation

    async def _deliver(self, message: aiormq.abc.DeliveredMessage) -> None:
        self._on_reply(message.header.properties.correlation_id, message.body)

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> int:
        """Publish (confirmed, mandatory) and return the generation of the channel that took it.
        A publish caught by a connection loss is retried once on the recovered connection."""
        await self._check_exchange(message.exchange)
        for attempt in (1, 2):
            try:
                channel, generation = await self.ready()
                await publish_on(channel, message, timeout=timeout)
                return generation
            except _RPC_RETRY_ERRORS as exc:
                if attempt == 2:
                    raise PublishError(
                        f"publish failed, connection lost: {_describe(exc)}"
                    ) from exc
                await self.broker._wait_connected(timeout or 30.0)
        raise AssertionError("unreachable")

    async def _aux_channel(self) -> aiormq.abc.AbstractChannel:
        if self._aux is None or self._aux.is_closed:
            self._aux = await self.broker.channel()
        return await self._aux.get_underlay_channel()

    async def _check_exchange(self, name: str) -> None:
        # A publish to a missing exchange closes the channel, and every direct reply-to
        # in flight with it; check each exchange once per process on a side channel.
        if name in self._known_exchanges or name == "" or name.startswith("amq."):
            return
        try:
            await (await self._aux_channel()).exchange_declare(exchange=name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            await self._drop_aux()
            raise UnroutableError(
                f"exchange {name!r} does not exist in vhost {self.broker.settings.vhost!r}: "
                "declare the topology first (amqpq topology apply)"
            ) from exc
        except CONNECTION_ERRORS as exc:
            raise BrokerUnreachableError(f"cannot reach RabbitMQ: {_describe(exc)}") from exc
        self._known_exchanges.add(name)

    async def _drop_aux(self) -> None:
        aux, self._aux = self._aux, None
        if aux is not None and not aux.is_closed:
            try:
                await aux.close()
            except Exception:
                log.debug("closing a side channel failed", exc_info=True)

    async def ensure_queue(self, name: str) -> None:
        """Make sure a durable result queue exists: keep it as it is, or declare a classic one."""
        if name in self._known_queues:
            return
        try:
            try:
                await (await self._aux_channel()).queue_declare(queue=name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                await self._drop_aux()
                await (await self._aux_channel()).queue_declare(queue=name, durable=True)
        except aiormq.exceptions.AMQPChannelError as exc:
            await self._drop_aux()
            raise BrokerError(f"cannot declare result queue {name!r}: {exc}") from exc
        except CONNECTION_ERRORS as exc:
            raise BrokerUnreachableError(f"cannot reach RabbitMQ: {_describe(exc)}") from exc
        self._known_queues.add(name)

    async def collect(self, queue: str, wanted: Container[str]) -> list[tuple[str | None, bytes]]:
        """Take the replies for ``wanted`` ids from a result queue; requeue the others."""
        await self.ensure_queue(queue)
        async with self._collect_lock:
            return await self._collect(queue, wanted)

    async def _collect(self, queue: str, wanted: Container[str]) -> list[tuple[str | None, bytes]]:
        found: list[tuple[str | None, bytes]] = []
        try:
            channel = await self._aux_channel()
            skipped = False
            budget: int | None = None
            while budget is None or budget > 0:
                message = await channel.basic_get(queue, no_ack=False)
                if message.delivery_tag is None:  # get-empty
                    break
                budget = int(message.message_count or 0) if budget is None else budget - 1
                correlation_id = message.header.properties.correlation_id
                if correlation_id in wanted:
                    await channel.basic_ack(message.delivery_tag)
                    found.append((correlation_id, message.body))
                else:
                    skipped = True
            if skipped:
                await channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
        except aiormq.exceptions.AMQPChannelError as exc:
            await self._drop_aux()
            self._known_queues.discard(queue)
            raise BrokerError(f"reading result queue {queue!r}: {exc}") from exc
        except CONNECTION_ERRORS as exc:
            log.warning("result queue scan interrupted: %s", _describe(exc))
        return found

    async def close(self) -> None:
        await self._drop_aux()
        channel, self._channel = self._channel, None
        self._consuming_on = None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception:
                log.debug("closing the reply channel failed", exc_info=True)


# -- the async producer's transport (amqpq.transport.base.AsyncSendTransport) ------------------


def _no_reply_handler(_correlation_id: str | None, _body: bytes) -> None:
    return None


def _no_lost_handler(_reason: str) -> None:
    return None


class AsyncSendChannel(ReplyChannel):
    """A :class:`ReplyChannel` on a connection of its own: what an async producer sends on.

    After the robust connection recovers, the reply consumer is re-attached at
    once, so results lost with the old channel fail fast instead of at the next send.
    """

    def __init__(self, settings: Settings, role: str = "producer") -> None:
        super().__init__(
            AsyncBroker(settings, role), on_reply=_no_reply_handler, on_lost=_no_lost_handler
        )
        self.name = self.broker.name
        self.broker.on_reconnect.append(self._reconnected)

    def listen(self, on_reply: ReplyCallback, on_lost: LostCallback) -> None:
        self._on_reply = on_reply
        self._on_lost = on_lost

    async def _reconnected(self) -> None:
        try:
            await self.ready()
        except Exception as exc:
            log.warning("re-opening the reply channel failed: %s", exc)

    async def connect(self) -> None:
        await self.ready()

    def publish_plain(
        self, message: OutgoingMessage, *, timeout: float | None = 30.0
    ) -> Awaitable[None]:
        return self.broker.publish(message, timeout=timeout)

    def expect_replies(self, task_id: str, task: str | None, state: str) -> None:
        """Replies arrive on the event loop while a caller awaits: waiting makes sense."""

    async def close(self) -> None:
        await super().close()
        await self.broker.close()
