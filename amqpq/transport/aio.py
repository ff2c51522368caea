"""The asyncio transport on aio-pika: one robust connection, confirmed mandatory publishes.

Library errors are mapped here to :mod:`amqpq.errors`; nothing above this
module sees an aio-pika or aiormq exception.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
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

__all__ = ["AsyncBroker", "from_aio_properties", "ssl_context_for", "to_aio_message"]

log = logging.getLogger("amqpq.transport")

# Errors after which a publish may be retried once on the recovered connection.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.ConnectionClosed,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.AMQPConnectionError,
    ConnectionError,
    asyncio.IncompleteReadError,
)


def ssl_context_for(settings: Settings) -> ssl.SSLContext:
    """Certificate verification on by default; a CA bundle and client certificate from settings."""
    context = ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )
    if settings.tls_cert_file:
        context.load_cert_chain(
            str(settings.tls_cert_file),
            str(settings.tls_key_file) if settings.tls_key_file else None,
        )
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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
        expiration=props.expiration,
        message_id=props.message_id,
        timestamp=props.timestamp,
        type=props.type,
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
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
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
        try:
            await asyncio.wait_for(connection.ready(), timeout)
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
        await exchange.publish(
            to_aio_message(message),
            routing_key=message.routing_key,
            mandatory=message.mandatory,
            timeout=timeout,
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
