"""The asyncio transport on aio-pika: one robust connection, confirmed mandatory publishes.

:class:`AsyncBroker` (the connection, with failover), :func:`publish_on` (one
confirmed publish), :class:`AioConfirmingPublisher` (a publishing channel of its
own), :func:`retry_once_after_connection_loss` (the one retry policy of every
publisher here) and :class:`ReplyChannel` (direct reply-to for the producers).
Library errors are mapped to :mod:`amqpq.errors` through
:mod:`amqpq.transport.aio_mapping`; nothing above the transport package sees an
aio-pika or aiormq exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import replace
from typing import Any, TypeVar, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from yarl import URL

from amqpq.codec import OutgoingMessage
from amqpq.errors import (
    BrokerError,
    BrokerUnreachableError,
    PublishError,
    PublishNackedError,
    UnroutableError,
)
from amqpq.settings import BrokerAddress, Settings, connection_name
from amqpq.transport.aio_mapping import (
    CHANNEL_GONE_ERRORS,
    CLOSE_ERRORS,
    CONNECTION_ERRORS,
    connect_first,
    describe,
    reply_text,
    to_amqp_properties,
)
from amqpq.transport.aio_window import WINDOWS_SUPPORTED, publish_window
from amqpq.transport.base import NACK_RETRY_PAUSES
from amqpq.transport.tls import ssl_context_for
from amqpq.transport.wording import CONNECTION_LOST, publish_lost, refused_times
from amqpq.wire import (
    DIRECT_REPLY_TO,
    HEADER_CALLER,
    HEADER_PROTOCOL,
    RESULT_QUEUE_ARGUMENTS,
    TRANSIENT_QUEUE_ARGUMENTS,
    caller_queue_name,
)

__all__ = [
    "AioConfirmingPublisher",
    "AsyncBroker",
    "AsyncSendChannel",
    "ReplyChannel",
    "publish_on",
    "retry_once_after_connection_loss",
    "ssl_context_for",
]

log = logging.getLogger("amqpq.transport")

T = TypeVar("T")

# A publish waits for its confirm. By default aiormq also makes it wait until its frames
# were written (a drain per message in its writer task: another future and loop turn
# each); the confirm comes later anyway, so skip that where aiormq lets us.
_NO_WRITE_WAIT: dict[str, Any] = (
    {"wait": False} if "wait" in inspect.signature(aiormq.Channel.basic_publish).parameters else {}
)


def _windowable(message: OutgoingMessage) -> bool:
    # Returns are matched to their publish by message id; aiormq refuses long keys.
    return bool(message.properties.message_id) and len(message.routing_key) <= 255


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


class AsyncBroker:
    """One robust connection per role and process, over the URLs in this process's order.

    A lost connection is one WARNING line (which connection, where, why, where it tries
    next) and its recovery one INFO line; each attempt in between, and the client
    library's own account of it, only at debug level.
    """

    def __init__(self, settings: Settings, role: str) -> None:
        self.settings = settings
        self.role = role
        self.name = connection_name(role)
        self._connection: AbstractRobustConnection | None = None
        # The producers' publishing channel; a channel closed by the broker is not retried
        # here (the caller gets the error), unlike the worker's publishers.
        self._confirming = AioConfirmingPublisher(self, retry_on=CONNECTION_ERRORS)
        self._lock = asyncio.Lock()
        self.reconnects = 0
        self._background: set[asyncio.Future[Any]] = set()
        self.on_reconnect: list[Callable[[], Awaitable[None] | None]] = []
        self.on_lost: list[Callable[[], None]] = []
        """Called once when the connection drops (not when closed on purpose)."""
        self._order = settings.connect_order()
        self._address_index = 0
        self._lost_at: float | None = None
        self._closing = False
        self._failover_task: asyncio.Task[None] | None = None

    @property
    def address(self) -> BrokerAddress:
        """The address this connection uses (or tries next while it is down)."""
        return self._order[self._address_index]

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BrokerError("not connected")
        return self._connection

    @property
    def is_ready(self) -> bool:
        """Connected right now (never waits): False while the robust connection reconnects."""
        connection = self._connection
        if connection is None or connection.is_closed or not connection.connected.is_set():
            return False
        transport = connection.transport
        return transport is not None and not transport.connection.is_closed

    async def connect(self) -> AbstractRobustConnection:
        async with self._lock:
            if self._connection is not None and not self._connection.is_closed:
                return self._connection
            index, connection = await connect_first(self.settings, self._open)
            connection.reconnect_callbacks.add(self._reconnected)
            connection.close_callbacks.add(self._connection_lost)
            self._address_index = index
            self._connection = connection
            return connection

    async def _open(self, address: BrokerAddress) -> AbstractRobustConnection:
        return await aio_pika.connect_robust(
            _url_for(address, self.settings, self.name),
            timeout=self.settings.connect_timeout,
            ssl_context=ssl_context_for(self.settings) if address.tls else None,
            client_properties={"connection_name": self.name, "product": "amqpq"},
            reconnect_interval=1.0,
        )

    def _reconnected(self, *_: Any) -> None:
        self.reconnects += 1
        lost_at, self._lost_at = self._lost_at, None
        after = f" after {time.monotonic() - lost_at:.1f}s" if lost_at is not None else ""
        log.info(
            "reconnected to RabbitMQ at %s%s (%s), reconnects=%d",
            self.address.display,
            after,
            self.name,
            self.reconnects,
        )
        for callback in self.on_reconnect:
            result = callback()
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _connection_lost(self, connection: Any, exc: BaseException | None = None, *_: Any) -> None:
        if self._closing or connection.is_closed or getattr(connection, "_close_called", False):
            return  # closed by us
        if self._lost_at is not None:
            return  # a failed attempt of a recovery already under way
        self._lost_at = time.monotonic()
        for callback in self.on_lost:
            callback()
        lost = self.address.display
        if len(self._order) > 1:
            # aio-pika's robust connection retries the URL it first connected to: point it
            # at the next one, and keep rotating while no attempt succeeds (its retry loop
            # reads ``connection.url`` on each attempt).
            self._address_index = (self._address_index + 1) % len(self._order)
            connection.url = _url_for(self.address, self.settings, self.name)
            if self._failover_task is None or self._failover_task.done():
                self._failover_task = asyncio.ensure_future(self._rotate_addresses(connection))
        reason = describe(exc) if exc is not None else "closed"
        log.warning(
            "lost the connection to RabbitMQ at %s (%s): %s; reconnecting%s",
            lost,
            self.name,
            reason,
            f", next {self.address.display}" if len(self._order) > 1 else "",
        )

    async def _rotate_addresses(self, connection: Any) -> None:
        interval = 1.5  # a little more than reconnect_interval: one attempt per address
        while not connection.is_closed:
            await asyncio.sleep(interval)
            if self._lost_at is None:
                return  # reconnected (see _reconnected)
            self._address_index = (self._address_index + 1) % len(self._order)
            connection.url = _url_for(self.address, self.settings, self.name)
            log.debug("still no connection (%s); next attempt: %s", self.name, self.address.display)

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

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> None:
        """Publish and wait for the broker's confirm. Persistent, mandatory, retried once
        after a connection loss (at-least-once: consumers deduplicate by message id)."""
        await self._confirming.publish(message, timeout=timeout)

    async def _wait_connected(self, timeout: float) -> None:
        connection = await self.connect()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                await asyncio.wait_for(connection.ready(), max(0.0, deadline - loop.time()))
                # Right after a close, ``connected`` can still be set while the connection
                # underneath is already closed: wait for the new one.
                if self.is_ready:
                    return
                if loop.time() > deadline:
                    raise TimeoutError
                await asyncio.sleep(0.05)
        except TimeoutError as exc:
            raise BrokerUnreachableError(
                f"RabbitMQ did not come back within {timeout:.0f}s"
            ) from exc

    async def close(self) -> None:
        self._closing = True
        if self._failover_task is not None:
            self._failover_task.cancel()
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()


async def publish_on(
    channel: AbstractChannel,
    message: OutgoingMessage,
    *,
    timeout: float | None = 30.0,
    refused: PublishNackedError | None = None,
) -> None:
    """Publish on a confirming channel, mapping returns and nacks to amqpq errors; a
    message the broker refused is sent again after each of :data:`NACK_RETRY_PAUSES`.

    ``refused``: the first attempt was made elsewhere (in a window) and nacked; go on
    from there, as if this call had made it."""
    for attempt, pause in enumerate(NACK_RETRY_PAUSES, start=1):
        try:
            if attempt == 1 and refused is not None:
                raise refused
            return await _publish_once(channel, message, timeout=timeout)
        except PublishNackedError as exc:
            log.info("%s; attempt %d, sending again in %.1fs", exc, attempt, pause)
            await asyncio.sleep(pause)
    try:
        await _publish_once(channel, message, timeout=timeout)
    except PublishNackedError as exc:
        raise PublishNackedError(f"{exc} ({refused_times(NACK_RETRY_PAUSES)})") from exc


async def _publish_once(
    channel: AbstractChannel, message: OutgoingMessage, *, timeout: float | None
) -> None:
    try:
        # One deadline around the whole publish (a timer, no task). Given a timeout,
        # aiormq wraps each step (lock, write, confirm) in asyncio.wait_for: a task and
        # extra loop iterations each, before the frames even reach the socket.
        async with asyncio.timeout(timeout):
            if channel.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
            # Straight on aiormq's channel (as aio-pika's Exchange.publish does), with
            # the properties mapped once, without an aio-pika Message and Exchange.
            underlay = await channel.get_underlay_channel()
            await underlay.basic_publish(
                message.body,
                exchange=message.exchange,
                routing_key=message.routing_key,
                properties=to_amqp_properties(message),
                mandatory=message.mandatory,
                timeout=None,
                **_NO_WRITE_WAIT,
            )
    except Exception as exc:
        mapped = _publish_error(exc, message, timeout)
        if mapped is exc:
            raise
        raise mapped from exc


def _publish_error(exc: Exception, message: OutgoingMessage, timeout: float | None) -> Exception:
    """amqpq's error for what a confirmed publish of ``message`` raised (else ``exc``)."""
    if isinstance(exc, aiormq.exceptions.PublishError):
        return UnroutableError(
            f"no queue is bound for exchange {message.exchange!r} with routing key "
            f"{message.routing_key!r}: the message was returned ({reply_text(exc)})"
        )
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return PublishNackedError(
            f"RabbitMQ refused the message for exchange {message.exchange!r} "
            f"(e.g. a full queue with overflow=reject-publish): {exc}"
        )
    if isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity):
        return UnroutableError(f"exchange {message.exchange!r} does not exist: {exc}")
    if isinstance(exc, TimeoutError):
        return PublishError(f"no publisher confirm within {timeout}s")
    return exc


async def retry_once_after_connection_loss(
    broker: AsyncBroker,
    again: Callable[[], Awaitable[T]],
    *,
    timeout: float | None,
    retry_on: tuple[type[BaseException], ...] = CONNECTION_ERRORS,
) -> T:
    """The second and last attempt of a publish that a connection loss interrupted.

    Waits for the robust connection to come back (``timeout``, 30 s if None), runs
    ``again`` and returns its result; a second loss (one of ``retry_on``) raises
    :class:`~amqpq.errors.PublishError`. At-least-once: the first attempt may have
    reached the broker, and consumers deduplicate by message id. Callers make the
    first attempt themselves, so a publish that succeeds pays nothing for this.
    """
    await broker.wait_ready(timeout or 30.0)
    try:
        return await again()
    except retry_on as exc:
        raise PublishError(publish_lost(describe(exc))) from exc


class AioConfirmingPublisher:
    """Publishes with confirms on a channel of its own.

    Dead letters and retries go to exchanges that may not exist (a worker
    started before ``topology apply``): a publish to a missing exchange closes
    its channel, so those get a channel apart from the replies. After a
    connection loss, or a channel the broker closed (one of ``retry_on``), the
    publish is retried once on a new channel.
    """

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        retry_on: tuple[type[BaseException], ...] = CHANNEL_GONE_ERRORS,
    ) -> None:
        self._broker = broker
        self._retry_on = retry_on
        self._channel = ChannelSlot(broker)

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> None:
        """Publish and wait for the confirm; retried once after a connection loss.

        Raises :class:`~amqpq.errors.UnroutableError` (returned or no such exchange),
        :class:`~amqpq.errors.PublishNackedError` or :class:`~amqpq.errors.PublishError`.
        """
        try:
            await publish_on(await self._channel.get(), message, timeout=timeout)
        except BrokerUnreachableError:
            raise  # no address took a connection: nothing to retry on
        except self._retry_on:
            self._channel.forget()
            await retry_once_after_connection_loss(
                self._broker,
                lambda: self._publish_again(message, timeout),
                timeout=timeout,
                retry_on=self._retry_on,
            )

    async def _publish_again(self, message: OutgoingMessage, timeout: float | None) -> None:
        try:
            await publish_on(await self._channel.get(), message, timeout=timeout)
        except self._retry_on:
            self._channel.forget()
            raise

    async def close(self) -> None:
        await self._channel.close()


class ChannelSlot:
    """A channel of one connection, opened on first use and again once the broker or a
    connection loss closed it (concurrent users wait for the one opening)."""

    def __init__(self, broker: AsyncBroker) -> None:
        self._broker = broker
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()

    async def get(self) -> AbstractChannel:
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                self._channel = await self._broker.channel()
            return self._channel

    def forget(self) -> None:
        """The channel failed: the next :meth:`get` opens another."""
        self._channel = None

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*CLOSE_ERRORS):
                await channel.close()


async def _declare_caller(channel: aiormq.Channel) -> str | None:
    """A caller queue held by ``channel``'s connection (:data:`~amqpq.wire.HEADER_CALLER`),
    declared on a channel of its own: a user without the permission to declare it loses
    nothing but the workers' knowing when this producer has gone."""
    name = caller_queue_name()
    try:
        side = await channel.connection.channel(publisher_confirms=False)
        await side.queue_declare(name, exclusive=True, arguments=dict(TRANSIENT_QUEUE_ARGUMENTS))
        await side.close()
    except aiormq.exceptions.AMQPChannelError as exc:
        log.debug("no caller queue on this connection: %s", describe(exc))
        return None
    return name


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
        # The current connection's caller queue (amqpq.wire.HEADER_CALLER), if it has one.
        self._caller: str | None = None

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
                self._on_lost(CONNECTION_LOST)
            if self._channel is None or self._channel.is_closed:
                self._channel = await self.broker.channel()
            underlay = await self._channel.get_underlay_channel()
            self._caller = await _declare_caller(cast(aiormq.Channel, underlay))
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
        try:
            channel, generation = await self.ready()
            await publish_on(channel, self._named(message), timeout=timeout)
        except BrokerUnreachableError:
            raise  # no address took a connection: nothing to retry on
        except _RPC_RETRY_ERRORS:
            return await self._retry_after_loss(message, timeout)
        return generation

    async def _retry_after_loss(self, message: OutgoingMessage, timeout: float | None) -> int:
        """The one retry of a publish a connection loss interrupted, once it is back."""
        return await retry_once_after_connection_loss(
            self.broker,
            lambda: self._publish_again(message, timeout),
            timeout=timeout,
            retry_on=_RPC_RETRY_ERRORS,
        )

    async def _publish_again(self, message: OutgoingMessage, timeout: float | None) -> int:
        channel, generation = await self.ready()
        await publish_on(channel, self._named(message), timeout=timeout)
        return generation

    def _named(self, message: OutgoingMessage) -> OutgoingMessage:
        """``message`` naming this connection's caller queue when it asks for a reply here."""
        caller = self._caller
        props = message.properties
        if (
            caller is None
            or props.reply_to != DIRECT_REPLY_TO
            or HEADER_PROTOCOL not in props.headers
        ):
            return message  # no reply asked here, or Celery's format (its own headers)
        headers = {**props.headers, HEADER_CALLER: caller}
        return replace(message, properties=replace(props, headers=headers))

    async def publish_window(
        self, messages: Sequence[OutgoingMessage], *, timeout: float | None = 30.0
    ) -> list[int | BaseException]:
        """:meth:`publish` for each message, the first attempts written as one frame: per
        message, the generation that took it or what :meth:`publish` would raise.

        Only the first attempt differs: a message the broker nacked, a channel or
        connection lost under the window, go on one by one exactly as in :meth:`publish`
        (the nack pauses, the one retry after a reconnect), concurrently.
        """
        alone: list[int] = []  # what the window cannot carry goes the one-message way
        window: list[int] = []
        for index, message in enumerate(messages):
            (window if WINDOWS_SUPPORTED and _windowable(message) else alone).append(index)
        outcomes: dict[int, int | BaseException] = {}
        later: list[tuple[int, Awaitable[int]]] = []
        underlay: aiormq.abc.AbstractChannel | None = None
        if window:
            try:
                for name in {messages[i].exchange for i in window}:
                    await self._check_exchange(name)
                channel, generation = await self.ready()
                underlay = await channel.get_underlay_channel()
            except Exception:
                underlay = None  # each message meets the error (and its retry) on its own
        if window and isinstance(underlay, aiormq.Channel):
            try:
                first = await publish_window(
                    underlay,
                    [self._named(messages[i]) for i in window],
                    timeout=timeout,
                    on_timeout=TimeoutError,
                )
            except Exception as exc:  # e.g. the channel closed before anything was written
                first = [exc] * len(window)
            for index, error in zip(window, first, strict=True):
                if error is None:
                    outcomes[index] = generation
                elif isinstance(error, Exception):
                    again = self._after_first(messages[index], error, channel, generation, timeout)
                    later.append((index, again))
                else:
                    outcomes[index] = error
        else:
            alone.extend(window)
        later.extend((i, self.publish(messages[i], timeout=timeout)) for i in alone)
        if later:
            ended = await asyncio.gather(*(a for _, a in later), return_exceptions=True)
            outcomes.update((index, o) for (index, _), o in zip(later, ended, strict=True))
        return [outcomes[i] for i in range(len(messages))]

    async def _after_first(
        self,
        message: OutgoingMessage,
        error: Exception,
        channel: AbstractChannel,
        generation: int,
        timeout: float | None,
    ) -> int:
        """What :meth:`publish` does once its first attempt on ``channel`` raised ``error``."""
        mapped = _publish_error(error, message, timeout)
        try:
            if mapped is not error:
                try:
                    raise mapped from error
                except PublishNackedError as refused:
                    await publish_on(
                        channel, self._named(message), timeout=timeout, refused=refused
                    )
                    return generation
            raise error
        except BrokerUnreachableError:
            raise  # no address took a connection: nothing to retry on
        except _RPC_RETRY_ERRORS:
            return await self._retry_after_loss(message, timeout)

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
        except BrokerUnreachableError:
            raise
        except CONNECTION_ERRORS as exc:
            raise BrokerUnreachableError(f"{CONNECTION_LOST}: {describe(exc)}") from exc
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
                await (await self._aux_channel()).queue_declare(
                    queue=name, durable=True, arguments=dict(RESULT_QUEUE_ARGUMENTS)
                )
        except aiormq.exceptions.AMQPChannelError as exc:
            await self._drop_aux()
            raise BrokerError(f"cannot declare result queue {name!r}: {exc}") from exc
        except BrokerUnreachableError:
            raise
        except CONNECTION_ERRORS as exc:
            raise BrokerUnreachableError(f"{CONNECTION_LOST}: {describe(exc)}") from exc
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
            log.warning("result queue scan interrupted: %s", describe(exc))
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
