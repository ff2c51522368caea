"""The synchronous transport on pika's ``BlockingConnection``: all pika code lives here.

One connection per producer, used under :attr:`BlockingBroker.lock` (pika is not
thread-safe). Publishes are persistent, mandatory and confirmed; confirms are
tracked per delivery tag, so a bulk send keeps many in flight on one channel.
The publishing channel also consumes RabbitMQ direct reply-to, because the
broker only delivers replies to a consumer on the very channel that published.

pika only reads the socket (heartbeats included) while something calls into it;
a keep-alive thread pumps the connection while the process is idle, and a
connection that died anyway is replaced on next use: a publish that fails with a
connection error is retried once on a new connection (at-least-once).

pika errors become :mod:`amqpq.errors` here, through :mod:`amqpq.transport.pika_mapping`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport as _PlaintextTransport

from amqpq.codec import OutgoingMessage
from amqpq.errors import (
    BrokerError,
    BrokerUnreachableError,
    PublishError,
    PublishNackedError,
    UnroutableError,
)
from amqpq.settings import BrokerAddress, Settings, connection_name
from amqpq.transport.base import NACK_RETRY_PAUSES
from amqpq.transport.library_logs import quiet_library_logs
from amqpq.transport.pika_mapping import (
    CONNECTION_ERRORS,
    NOT_FOUND,
    describe,
    to_pika_properties,
)
from amqpq.transport.tls import ssl_context_for
from amqpq.transport.wording import (
    CONNECTION_LOST,
    cannot_connect,
    credentials_refused,
    publish_lost,
    refused_times,
    vhost_refused,
)
from amqpq.wire import (
    DIRECT_REPLY_TO,
    HEADER_CALLER,
    HEADER_PROTOCOL,
    RESULT_QUEUE_ARGUMENTS,
    TRANSIENT_QUEUE_ARGUMENTS,
    caller_queue_name,
)

__all__ = ["BlockingBroker", "ReplyCallback"]

log = logging.getLogger("amqpq.transport")

# How many unconfirmed publishes one bulk send keeps in flight.
PUBLISH_WINDOW = 1000


def _declare_caller(connection: BlockingConnection) -> str | None:
    """A caller queue held by ``connection`` (:data:`~amqpq.wire.HEADER_CALLER`), declared
    on a channel of its own: a user without the permission to declare it loses nothing
    but the workers' knowing when this producer has gone."""
    name = caller_queue_name()
    try:
        side = connection.channel()
        side.queue_declare(name, exclusive=True, arguments=TRANSIENT_QUEUE_ARGUMENTS)
        side.close()
    except pika.exceptions.AMQPChannelError as exc:
        log.debug("no caller queue on this connection: %s", describe(exc))
        return None
    return name


ReplyCallback = Callable[[str | None, bytes], None]
"""Called (under the broker lock) with ``correlation_id`` and body of each direct reply."""
LostCallback = Callable[[str], None]
"""Called when the publishing channel is gone, with a reason: its direct replies are lost."""


class _ConnectionLost(Exception):
    """Internal: the connection or publishing channel died under a publish; retry it."""


_RETRYABLE: tuple[type[BaseException], ...] = (_ConnectionLost, *CONNECTION_ERRORS)


def _noop() -> None:
    return None


@dataclass(slots=True)
class _Outstanding:
    message: OutgoingMessage
    done: bool = False
    returned: str | None = None
    error: BaseException | None = None
    lost: bool = False


class BlockingBroker:
    """A pika connection for a synchronous producer. Hold :attr:`lock` around every call."""

    def __init__(
        self,
        settings: Settings,
        role: str = "producer",
        *,
        on_reply: ReplyCallback | None = None,
        on_lost: LostCallback | None = None,
        confirm_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.name = connection_name(role)
        self.lock = threading.RLock()
        self.confirm_timeout = confirm_timeout
        self._on_reply = on_reply
        self._on_lost = on_lost
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._aux: BlockingChannel | None = None
        # This connection's caller queue (amqpq.wire.HEADER_CALLER), named in its tasks.
        self._caller: str | None = None
        self._outstanding: dict[int, _Outstanding] = {}
        self._tag = 0
        self._known_exchanges: set[str] = set()
        self._known_queues: set[str] = set()
        self._waiting = False
        self._last_io = 0.0
        self._keepalive: threading.Thread | None = None
        self._stop = threading.Event()
        self.generation = 0
        """Bumped each time a new publishing channel opens (its reply-to address changes)."""
        self.reconnects = 0
        self.address: BrokerAddress | None = None
        """The address of the current (or last) connection."""

    def listen(self, on_reply: ReplyCallback, on_lost: LostCallback) -> None:
        """Where direct replies go and who hears they were lost (the producer's router)."""
        self._on_reply = on_reply
        self._on_lost = on_lost

    def expect_replies(self, task_id: str, task: str | None, state: str) -> None:
        """Replies arrive while a waiter pumps: waiting always makes sense here."""

    # -- connection --------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return (
            self._connection is not None
            and self._connection.is_open
            and self._channel is not None
            and self._channel.is_open
        )

    def connect(self) -> None:
        """Open the connection and the publishing channel if they are not open."""
        with self.lock:
            self._ensure_channel()

    def _ensure_channel(self) -> BlockingChannel:
        if self.is_connected:
            assert self._channel is not None
            return self._channel
        had_connection = self.generation > 0
        self._drop(CONNECTION_LOST)
        address, connection = self._open_connection()
        try:
            channel = connection.channel()
            impl = channel._impl  # confirms tracked per tag: pipelined, not one at a time
            ready: list[bool] = []
            impl.confirm_delivery(
                ack_nack_callback=self._on_confirm, callback=_marker(ready, self._wake)
            )
            impl.add_on_return_callback(self._on_return)
            impl.add_on_close_callback(self._on_channel_closed)
            if self._on_reply is not None:
                self._caller = _declare_caller(connection)
                channel.basic_consume(DIRECT_REPLY_TO, self._on_reply_delivery, auto_ack=True)
            self._connection = connection
            self._pump_until(lambda: bool(ready), self.settings.connect_timeout)
        except (*CONNECTION_ERRORS, pika.exceptions.AMQPChannelError) as exc:
            self._connection = None
            _close_quietly(connection)
            raise BrokerUnreachableError(
                f"RabbitMQ closed the new connection: {describe(exc)}"
            ) from exc
        self._channel = channel
        self._tag = 0
        self.generation += 1
        self.address = address
        if had_connection:
            self.reconnects += 1
            log.info(
                "reconnected to RabbitMQ at %s (%s), reconnects=%d",
                address.display,
                self.name,
                self.reconnects,
            )
        self._last_io = time.monotonic()
        self._start_keepalive()
        return channel

    def _open_connection(self) -> tuple[BrokerAddress, BlockingConnection]:
        address, connection = open_first_blocking_connection(
            self.settings, self.name, self.confirm_timeout
        )
        _coalesce_writes(connection)
        return address, connection

    def _log_loss(self, reason: BaseException, then: str) -> None:
        """The one WARNING line of a lost connection (its reconnect is one INFO line)."""
        where = f" at {self.address.display}" if self.address is not None else ""
        log.warning(
            "lost the connection to RabbitMQ%s (%s): %s; %s",
            where,
            self.name,
            describe(reason),
            then,
        )

    def _drop(self, reason: str) -> None:
        """Forget the connection; fail what was in flight on it."""
        connection, self._connection = self._connection, None
        channel, self._channel = self._channel, None
        self._aux = None
        for record in self._outstanding.values():
            if not record.done:
                record.done = True
                record.lost = True
        self._outstanding.clear()
        if channel is not None and self._on_lost is not None:
            self._on_lost(reason)
        if connection is not None:
            _close_quietly(connection)

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            self._drop("the producer was closed")

    # -- pika callbacks (run inside process_data_events, under the lock) --------------------

    def _wake(self) -> None:
        # process_data_events returns early once a timer fired; only our own waits need it.
        if self._waiting and self._connection is not None and self._connection.is_open:
            self._connection.call_later(0, _noop)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = int(method.delivery_tag)
        nack = isinstance(method, pika.spec.Basic.Nack)
        tags = [t for t in self._outstanding if t <= tag] if method.multiple else [tag]
        for t in tags:
            record = self._outstanding.pop(t, None)
            if record is None:
                continue
            record.done = True
            if nack:
                record.error = PublishNackedError(
                    f"RabbitMQ refused the message for exchange {record.message.exchange!r} "
                    "(e.g. a full queue with overflow=reject-publish)"
                )
            elif record.returned is not None:
                record.error = UnroutableError(
                    f"no queue is bound for exchange {record.message.exchange!r} with routing key "
                    f"{record.message.routing_key!r}: the message was returned ({record.returned})"
                )
        self._wake()

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        # The broker sends basic.return before the ack of the same message.
        message_id = properties.message_id
        for record in self._outstanding.values():
            if record.returned is None and record.message.properties.message_id == message_id:
                record.returned = str(method.reply_text)
                break

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        error = _channel_close_error(reason, self._outstanding.values())
        for record in self._outstanding.values():
            if not record.done:
                record.done = True
                if error is None:
                    record.lost = True
                else:
                    record.error = error
                    if isinstance(error, UnroutableError):
                        self._known_exchanges.discard(record.message.exchange)
        self._outstanding.clear()
        if self._channel is not None and self._channel._impl is _channel:
            self._channel = None
            if self._on_lost is not None:
                self._on_lost(f"the publishing channel was closed ({describe(reason)})")
        self._wake()

    def _on_reply_delivery(self, _channel: Any, _method: Any, properties: Any, body: bytes) -> None:
        if self._on_reply is not None:
            self._on_reply(properties.correlation_id, body)

    # -- pumping -----------------------------------------------------------------------------

    def _pump_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Process I/O until ``done()`` or the timeout; False on timeout. Connection errors raise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        connection = self._connection
        if connection is None:
            raise _ConnectionLost("not connected")
        if _has_io_loop(connection):
            return self._pump_io_until(connection, done, deadline)
        self._waiting = True
        try:
            while not done():
                if deadline is None:
                    limit = 1.0
                else:
                    limit = deadline - time.monotonic()
                    if limit <= 0:
                        return False
                connection.process_data_events(time_limit=min(limit, 1.0))
        finally:
            self._waiting = False
            self._last_io = time.monotonic()
        return True

    def _pump_io_until(
        self, connection: BlockingConnection, done: Callable[[], bool], deadline: float | None
    ) -> bool:
        """:meth:`_pump_until` on the I/O loop under pika's ``BlockingConnection``.

        ``process_data_events`` sets a timer per call and needs one more from
        :meth:`_wake` to return once a confirm arrived; here one poll reads the confirm
        and the loop sees it, with at most one timer for the deadline. A connection
        that closed meanwhile raises its error as ``process_data_events`` would, and
        what the ``BlockingConnection`` queued for its own dispatch (direct replies,
        its timers) is dispatched before returning.
        """
        impl: Any = connection._impl
        ioloop = impl.ioloop
        closed: Any = connection._closed_result
        timer = None
        try:
            while True:
                if closed.ready:
                    _raise_close(connection)
                    return done()
                if done():
                    break
                if deadline is not None:
                    limit = deadline - time.monotonic()
                    if limit <= 0:
                        return False
                    if timer is None:
                        timer = ioloop.call_later(limit, _noop)
                ioloop.poll()
                ioloop.process_timeouts()
        finally:
            if timer is not None and not closed.ready:
                ioloop.remove_timeout(timer)
            self._last_io = time.monotonic()
        if connection._channels_pending_dispatch or connection._ready_events:
            connection.process_data_events(0)
        return True

    def pump(self, time_limit: float) -> None:
        """Process incoming frames (replies, heartbeats) for up to ``time_limit`` seconds.

        Returns early once anything was dispatched. A lost connection is dropped
        quietly (its direct replies are reported lost through ``on_lost``).
        """
        connection = self._connection
        if connection is None or not connection.is_open:
            if self._channel is not None or connection is not None:
                self._drop(CONNECTION_LOST)
            time.sleep(min(time_limit, 0.05))
            return
        try:
            connection.process_data_events(time_limit=time_limit)
        except CONNECTION_ERRORS as exc:
            self._log_loss(exc, "reconnecting on next use")
            self._drop(f"{CONNECTION_LOST} ({describe(exc)})")
        finally:
            self._last_io = time.monotonic()

    def wake_pump(self) -> None:
        """Thread-safe: make a pump running in another thread return soon."""
        connection = self._connection
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.ConnectionWrongStateError):
                connection.add_callback_threadsafe(_noop)

    # -- publishing --------------------------------------------------------------------------

    def publish(self, message: OutgoingMessage) -> int:
        """Publish one message, wait for its confirm and return the channel generation
        that took it; raises the mapped error."""
        error, generation = self.publish_many([message])[0]
        if error is not None:
            raise error
        return generation

    def publish_many(
        self, messages: Sequence[OutgoingMessage], *, window: int = PUBLISH_WINDOW
    ) -> list[tuple[BaseException | None, int]]:
        """Publish all, ``window`` unconfirmed at a time.

        Returns, per message, its error (None when confirmed) and the generation of
        the channel that took it. Messages caught by a connection loss are
        republished once on a new connection; messages the broker refused (nacked),
        after each pause of :data:`NACK_RETRY_PAUSES`.
        """
        results = self._publish_many_once(messages, window)
        for attempt, pause in enumerate(NACK_RETRY_PAUSES, start=1):
            refused = [i for i, (error, _) in enumerate(results) if _is_nack(error)]
            if not refused:
                return results
            log.info(
                "%d message(s) refused by RabbitMQ (%s); attempt %d, sending again in %.1fs",
                len(refused),
                results[refused[0]][0],
                attempt,
                pause,
            )
            self._pause(pause)
            again = self._publish_many_once([messages[i] for i in refused], window)
            for index, outcome in zip(refused, again, strict=True):
                results[index] = outcome
        said = refused_times(NACK_RETRY_PAUSES)
        return [
            (PublishNackedError(f"{error} ({said})"), generation)
            if _is_nack(error)
            else (error, generation)
            for error, generation in results
        ]

    def _pause(self, seconds: float) -> None:
        """Wait while the connection goes on serving (heartbeats, direct replies)."""
        if self._connection is not None and self._connection.is_open:
            try:
                self._connection.sleep(seconds)
                return
            except CONNECTION_ERRORS:
                pass  # the next attempt reconnects
        time.sleep(seconds)

    def _publish_many_once(
        self, messages: Sequence[OutgoingMessage], window: int
    ) -> list[tuple[BaseException | None, int]]:
        results: list[tuple[BaseException | None, int]] = [(None, 0)] * len(messages)
        todo = list(range(len(messages)))
        for attempt in (1, 2):
            records: list[tuple[int, _Outstanding]] = []
            errors: list[BaseException | None] = [None] * len(messages)
            try:
                self._ensure_channel()
            except BrokerUnreachableError as exc:
                # No connection could be opened (every address was tried): that is the
                # error, said once, never "retrying after a connection loss".
                for index in todo:
                    results[index] = (exc, self.generation)
                return results
            try:
                generation = self.generation
                self._check_exchanges(messages, todo, errors)
                deadline = time.monotonic() + self.confirm_timeout
                for index in todo:
                    if errors[index] is not None:
                        results[index] = (errors[index], generation)
                        continue
                    if len(self._outstanding) >= window:
                        self._pump_until(lambda: len(self._outstanding) < window, None)
                    records.append((index, self._publish_raw(messages[index])))
                self._pump_until(
                    lambda sent=records: all(r.done for _, r in sent),  # type: ignore[misc]
                    deadline - time.monotonic(),
                )
            except _RETRYABLE as exc:
                if attempt == 1:
                    self._log_loss(exc, "publishing again on a new connection")
                self._drop(f"{CONNECTION_LOST} ({describe(exc)})")
                failure: BaseException = exc
            else:
                failure = _ConnectionLost("the publishing channel closed")
            retry: list[int] = []
            for index, record in records:
                if not record.done:
                    results[index] = (
                        PublishError(f"no publisher confirm within {self.confirm_timeout:.0f}s"),
                        generation,
                    )
                elif record.lost:
                    retry.append(index)
                else:
                    results[index] = (record.error, generation)
            handled = {index for index, _ in records} | {i for i in todo if errors[i] is not None}
            retry += [i for i in todo if i not in handled]
            if not retry:
                return results
            if attempt == 2:
                for index in retry:
                    results[index] = (
                        PublishError(publish_lost(describe(failure))),
                        self.generation,
                    )
                return results
            log.debug("retrying %d publish(es) after a connection loss", len(retry))
            todo = sorted(retry)
        return results

    def _publish_raw(self, message: OutgoingMessage) -> _Outstanding:
        assert self._channel is not None
        properties = to_pika_properties(message.properties)
        if (
            properties.reply_to == DIRECT_REPLY_TO
            and self._caller is not None
            and HEADER_PROTOCOL in message.properties.headers  # amqpq's format, not Celery's
        ):
            properties.headers = {**message.properties.headers, HEADER_CALLER: self._caller}
        self._channel._impl.basic_publish(
            exchange=message.exchange,
            routing_key=message.routing_key,
            body=message.body,
            properties=properties,
            mandatory=message.mandatory,
        )
        self._tag += 1
        record = _Outstanding(message)
        self._outstanding[self._tag] = record
        return record

    def _check_exchanges(
        self,
        messages: Sequence[OutgoingMessage],
        todo: list[int],
        results: list[BaseException | None],
    ) -> None:
        # Publishing to a missing exchange closes the channel, and with it every direct
        # reply-to in flight; check each exchange once per process on a side channel instead.
        for name in {messages[i].exchange for i in todo} - self._known_exchanges:
            if name == "" or name.startswith("amq."):
                self._known_exchanges.add(name)
                continue
            try:
                self._aux_channel().exchange_declare(name, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                self._aux = None
                if exc.reply_code != NOT_FOUND:
                    raise BrokerError(f"checking exchange {name!r}: {describe(exc)}") from exc
                error = UnroutableError(
                    f"exchange {name!r} does not exist in vhost {self.settings.vhost!r}: "
                    "declare the topology first (amqpq topology apply)"
                )
                for i in todo:
                    if messages[i].exchange == name:
                        results[i] = error
            else:
                self._known_exchanges.add(name)

    # -- side channel: checks and durable result queues --------------------------------------

    def _aux_channel(self) -> BlockingChannel:
        if self._aux is None or not self._aux.is_open:
            self._ensure_channel()
            assert self._connection is not None
            self._aux = self._connection.channel()
        return self._aux

    def ensure_queue(self, name: str) -> None:
        """Make sure a durable result queue exists: keep it as it is, or declare a classic one."""
        if name in self._known_queues:
            return
        for attempt in (1, 2):
            try:
                try:
                    self._aux_channel().queue_declare(name, passive=True)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    self._aux = None
                    if exc.reply_code != NOT_FOUND:
                        raise BrokerError(f"checking queue {name!r}: {describe(exc)}") from exc
                    self._aux_channel().queue_declare(
                        name, durable=True, arguments=dict(RESULT_QUEUE_ARGUMENTS)
                    )
                self._known_queues.add(name)
                return
            except pika.exceptions.ChannelClosedByBroker as exc:
                self._aux = None
                raise BrokerError(f"cannot declare result queue {name!r}: {describe(exc)}") from exc
            except BrokerUnreachableError:
                raise
            except CONNECTION_ERRORS as exc:
                self._drop(f"{CONNECTION_LOST} ({describe(exc)})")
                if attempt == 2:
                    raise BrokerUnreachableError(
                        f"connection lost while declaring {name!r}: {describe(exc)}"
                    ) from exc

    def collect(self, queue: str, wanted: Container[str]) -> list[tuple[str | None, bytes]]:
        """Take the replies for ``wanted`` task ids from a result queue; leave the others.

        Scans the messages present when it starts with basic.get, acks the wanted
        ones and requeues the rest in one basic.nack (classic queues keep their order).
        """
        self.ensure_queue(queue)
        found: list[tuple[str | None, bytes]] = []
        try:
            channel = self._aux_channel()
            skipped = False
            budget: int | None = None
            while budget is None or budget > 0:
                method, properties, body = channel.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                if budget is None:
                    budget = int(method.message_count)  # only what was there when we started
                else:
                    budget -= 1
                if properties.correlation_id in wanted:
                    channel.basic_ack(method.delivery_tag)
                    found.append((properties.correlation_id, body))
                else:
                    skipped = True
            if skipped:
                channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._aux = None
            self._known_queues.discard(queue)
            raise BrokerError(f"reading result queue {queue!r}: {describe(exc)}") from exc
        except CONNECTION_ERRORS as exc:
            # Unacked messages go back to the queue by themselves when the connection dies.
            self._drop(f"{CONNECTION_LOST} ({describe(exc)})")
        finally:
            self._last_io = time.monotonic()
        return found

    # -- keep-alive --------------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        if self.settings.heartbeat <= 0 or (self._keepalive and self._keepalive.is_alive()):
            return
        self._stop.clear()
        self._keepalive = threading.Thread(
            target=self._keepalive_loop, name=f"{self.name} keep-alive", daemon=True
        )
        self._keepalive.start()

    def _keepalive_loop(self) -> None:
        interval = max(self.settings.heartbeat / 4, 0.5)
        while not self._stop.wait(interval):
            if time.monotonic() - self._last_io < interval:
                continue
            if not self.lock.acquire(timeout=interval):
                continue
            try:
                if self._connection is not None and self._connection.is_open:
                    self.pump(0)
            except Exception:  # the thread must never die; the next use reconnects
                log.debug("keep-alive pump failed", exc_info=True)
            finally:
                self.lock.release()


def _coalesce_writes(connection: BlockingConnection) -> None:
    """Hand a message's frames (method, header, body) to the socket as one buffer, at once.

    pika queues each frame as its own buffer, asks its poller to watch the socket for
    writability and sends the buffers on the next poll, one ``send()`` each: three
    system calls per publish plus a poll and two poller updates where one ``send()``
    does. When nothing is queued before them, the bytes go straight to a plain TCP
    socket (as asyncio's transports do); what the socket does not take, and every
    error, goes to pika's own write path, which keeps the order and reports failures
    as it always did. Only when pika has the methods and attributes this relies on.
    """
    impl = connection._impl
    output = getattr(impl, "_output_marshaled_frames", None)
    emit = getattr(impl, "_adapter_emit_data", None)
    if output is None or emit is None or not hasattr(impl, "frames_sent"):
        return
    transport: Any = getattr(impl, "_transport", None)
    direct = (
        isinstance(transport, _PlaintextTransport)
        and hasattr(transport, "_tx_buffers")
        and hasattr(transport, "_sock")
        and hasattr(transport, "_state")
    )
    active = getattr(_PlaintextTransport, "_STATE_ACTIVE", None)

    def output_joined(marshaled_frames: Sequence[bytes]) -> None:
        data = marshaled_frames[0] if len(marshaled_frames) == 1 else b"".join(marshaled_frames)
        impl.bytes_sent += len(data)
        impl.frames_sent += len(marshaled_frames)
        if direct and transport._state == active and not transport._tx_buffers:
            try:
                sent = transport._sock.send(data)
            except OSError:  # would block, interrupted or failed: pika's path says which
                sent = 0
            if sent >= len(data):
                return
            data = data[sent:]
        emit(data)

    impl._output_marshaled_frames = output_joined


def _has_io_loop(connection: BlockingConnection) -> bool:
    """Whether this pika has what :meth:`BlockingBroker._pump_io_until` relies on."""
    impl = getattr(connection, "_impl", None)
    ioloop = getattr(impl, "ioloop", None)
    return all(
        hasattr(connection, name)
        for name in ("_closed_result", "_cleanup", "_channels_pending_dispatch", "_ready_events")
    ) and all(
        hasattr(ioloop, name)
        for name in ("poll", "process_timeouts", "call_later", "remove_timeout")
    )


def _raise_close(connection: BlockingConnection) -> None:
    """What ``process_data_events`` does when the connection closed under it: release
    it and raise the reason (a close this process asked for raises nothing)."""
    error = connection._closed_result.value.error
    connection._cleanup()
    if not isinstance(error, pika.exceptions.ConnectionClosedByClient):
        raise error


def _is_nack(error: BaseException | None) -> bool:
    return isinstance(error, PublishNackedError)


def _marker(flag: list[bool], wake: Callable[[], None]) -> Callable[[Any], None]:
    def mark(_frame: Any) -> None:
        flag.append(True)
        wake()

    return mark


def _channel_close_error(reason: BaseException, records: Any) -> BaseException | None:
    """The amqpq error for publishes killed by a channel close; None: retry them elsewhere."""
    if not isinstance(reason, pika.exceptions.ChannelClosedByBroker):
        return None
    text = f"{reason.reply_code} {reason.reply_text}"
    if reason.reply_code == NOT_FOUND:
        exchanges = sorted({r.message.exchange for r in records})
        return UnroutableError(f"exchange {', '.join(map(repr, exchanges))} does not exist: {text}")
    return PublishError(f"RabbitMQ closed the channel: {text}")


def _close_quietly(connection: BlockingConnection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:
        log.debug("closing a dead connection failed", exc_info=True)


def connection_parameters(
    settings: Settings, address: BrokerAddress, name: str, confirm_timeout: float
) -> pika.ConnectionParameters:
    """pika parameters for one broker address: named, heartbeats, TLS with verification."""
    ssl_options = (
        pika.SSLOptions(ssl_context_for(settings), server_hostname=address.host)
        if address.tls
        else None
    )
    return pika.ConnectionParameters(
        host=address.host,
        port=address.port,
        virtual_host=address.vhost,
        credentials=pika.PlainCredentials(address.username, address.password),
        heartbeat=settings.heartbeat,
        blocked_connection_timeout=max(confirm_timeout, 1.0),
        connection_attempts=1,
        socket_timeout=settings.connect_timeout,
        stack_timeout=settings.connect_timeout,
        ssl_options=ssl_options,
        client_properties={"connection_name": name, "product": "amqpq"},
    )


def open_blocking_connection(
    settings: Settings, name: str, confirm_timeout: float
) -> BlockingConnection:
    """A pika connection to the first broker address that answers, in this process's
    failover order (:meth:`Settings.connect_order`)."""
    return open_first_blocking_connection(settings, name, confirm_timeout)[1]


def open_first_blocking_connection(
    settings: Settings, name: str, confirm_timeout: float
) -> tuple[BrokerAddress, BlockingConnection]:
    """:func:`open_blocking_connection`, with the address that took it;
    :class:`BrokerUnreachableError` naming each address and its refusal, once."""
    quiet_library_logs()
    errors: list[str] = []
    for address in settings.connect_order():
        try:
            return address, BlockingConnection(
                connection_parameters(settings, address, name, confirm_timeout)
            )
        except pika.exceptions.ProbableAuthenticationError:
            errors.append(f"{address.display}: {credentials_refused(address.username)}")
        except pika.exceptions.ProbableAccessDeniedError:
            errors.append(f"{address.display}: {vhost_refused(address.vhost, address.username)}")
        except (pika.exceptions.AMQPError, OSError) as exc:
            errors.append(f"{address.display}: {describe(exc, address.host)}")
    raise BrokerUnreachableError(cannot_connect(errors))
