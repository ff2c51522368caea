"""Unit-testing code that uses amqpq, without RabbitMQ.

::

    from amqpq.testing import TestBroker

    def test_signup_sends_a_welcome_mail() -> None:
        with TestBroker(app) as broker:        # the app's producers now publish into memory
            signup("ada@example.com")          # code under test calls send_email.delay(...)
            assert broker.queue("high_priority").tasks[0].task == "tasks.send_email"
            broker.run_all()                   # run them in-process, as a worker would
            assert outbox == ["ada@example.com"]

:class:`TestBroker` gives the App producers over a memory transport: the real
:class:`~amqpq.producer.Producer` and :class:`~amqpq.producer.AsyncProducer`
prepare each task (argument validation, routes, options, the static "reaches no
queue" check), run the publish hooks and ``task.sent`` events, and publish into
a :class:`~amqpq.transport.memory.MemoryBroker`, which routes them with the
topology's own matcher and keeps them in queues. :meth:`TestBroker.run_all`
consumes those queues with the worker's own message handler, so validation of
arguments from type hints, ``bind=True`` (``self.request``, ``self.retry``,
``self.update_state``), retries with backoff through the delay levels,
expiry and dead-lettering behave as on a worker. Time is virtual:
:meth:`TestBroker.advance` fast-forwards countdowns, etas and retry delays.

``TestBroker(app, eager=True)`` runs each task as soon as it is sent (delays
fast-forwarded), so ``add.delay(1, 2).get()`` returns 3 right away.

Per-task rate limits are not applied (tasks run back to back, the clock stays):
on a virtual clock a limit would have to move time inside ``run_all`` or leave
tasks undelivered, and neither tests user code (docs/testing.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from amqpq.codec import (
    HEADER_ERROR_MESSAGE,
    HEADER_ERROR_TYPE,
    HEADER_PROTOCOL,
    HEADER_REASON,
    HEADER_TASK,
    MessageProperties,
    OutgoingMessage,
    decode_task,
    fresh_headers,
)
from amqpq.delay import HEADER_DELAY_EXCHANGE, HEADER_DELAY_QUEUE
from amqpq.envelope import TaskEnvelope
from amqpq.errors import AmqpqError, ConfigError, DecodeError
from amqpq.producer import AsyncProducer, Producer
from amqpq.results.memory import MemoryStore
from amqpq.topology.infra import dead_letter_queue_name
from amqpq.transport.memory import (
    MemoryAsyncSendTransport,
    MemoryBroker,
    MemoryChordQueues,
    MemoryDelivery,
    MemoryPublisher,
    MemorySendTransport,
    StoredMessage,
)
from amqpq.worker.deadletter import dead_letter_targets
from amqpq.worker.factory import DeliveryGuard, HandlerOptions, PoolSpec, build_handler, make_pool
from amqpq.worker.hooks import Hooks
from amqpq.worker.options import resolve_queues
from amqpq.worker.pools import Pool
from amqpq.worker.stats import WorkerStats

if TYPE_CHECKING:
    from amqpq.app import App

__all__ = ["Message", "QueueView", "SentTask", "TestBroker"]

log = logging.getLogger("amqpq.testing")

# Tasks run one at a time; the extra slots let a task that sends another task in eager
# mode run it inline (a sync task waits in its thread while the inner one takes another).
_SLOTS = 8
_DEFAULT_LIMIT = 10_000
# Headers the codec adds to every task: not part of its route.
_ENVELOPE_HEADERS = frozenset({HEADER_PROTOCOL, HEADER_TASK})
_NOT_RUN_YET = (
    "the test broker runs tasks only when asked; call broker.run_all() (fast_forward=True "
    "for countdowns and retries) before get(), or use TestBroker(app, eager=True)"
)


class Message:
    """A message as it sits in a queue (read-only view)."""

    __slots__ = (
        "_envelope",
        "body",
        "exchange",
        "properties",
        "queue",
        "redelivered",
        "routing_key",
    )

    def __init__(self, queue: str, stored: StoredMessage) -> None:
        self.queue = queue
        self.body: bytes = stored.body
        self.properties: MessageProperties = stored.properties
        self.exchange: str = stored.exchange
        self.routing_key: str = stored.routing_key
        self.redelivered: bool = stored.redelivered
        self._envelope: TaskEnvelope | bool | None = False

    def __repr__(self) -> str:
        return f"<Message {self.queue} {self.task or '?'} id={self.properties.message_id}>"

    @property
    def headers(self) -> dict[str, Any]:
        return self.properties.headers

    @property
    def envelope(self) -> TaskEnvelope | None:
        """The task envelope, or None when the body is not one (bad input)."""
        if self._envelope is False:
            try:
                self._envelope = decode_task(self.body, self.properties)
            except DecodeError:
                self._envelope = None
        return cast("TaskEnvelope | None", self._envelope)

    @property
    def task(self) -> str | None:
        envelope = self.envelope
        if envelope is not None:
            return envelope.task
        name = self.headers.get(HEADER_TASK)
        return name if isinstance(name, str) else None

    @property
    def reason(self) -> str | None:
        """Why it was dead-lettered (``bad_arguments``, ``failed``, ``max_retries_exceeded``...)."""
        value = self.headers.get(HEADER_REASON)
        if value is None and self.headers.get("x-death"):
            value = self.headers.get("x-last-death-reason")  # dead-lettered by the broker itself
        return value if isinstance(value, str) else None

    @property
    def error_type(self) -> str | None:
        value = self.headers.get(HEADER_ERROR_TYPE)
        return value if isinstance(value, str) else None

    @property
    def error_message(self) -> str | None:
        value = self.headers.get(HEADER_ERROR_MESSAGE)
        return value if isinstance(value, str) else None


class QueueView:
    """``broker.queue("default")``: what a queue holds right now (ready messages)."""

    def __init__(self, broker: TestBroker, name: str) -> None:
        self._broker = broker
        self.name = name
        broker.memory.queue(name)  # KeyError with the known names

    def __repr__(self) -> str:
        return f"<QueueView {self.name}: {self.count} ready>"

    def __len__(self) -> int:
        return self.count

    @property
    def count(self) -> int:
        """Ready messages (what the management UI calls "Ready")."""
        return len(self._broker.memory.queue(self.name).ready)

    @property
    def messages(self) -> list[Message]:
        with self._broker.memory.lock:
            return [Message(self.name, m) for m in self._broker.memory.queue(self.name).ready]

    @property
    def tasks(self) -> list[TaskEnvelope]:
        """The task envelopes of the ready messages, in delivery order (bad input left out)."""
        return [m.envelope for m in self.messages if m.envelope is not None]

    def purge(self) -> int:
        """Drop every ready message; returns how many there were."""
        with self._broker.memory.lock:
            queue = self._broker.memory.queue(self.name)
            count = len(queue.ready)
            queue.ready.clear()
            return count


@dataclass(frozen=True, slots=True)
class SentTask:
    """A task a producer sent through the test broker (``broker.sent``)."""

    envelope: TaskEnvelope
    exchange: str
    """The exchange its route names (also for a delayed task, which enters the delay levels)."""
    routing_key: str
    headers: dict[str, Any]
    queues: frozenset[str]
    """The queues of the topology file its route reaches."""
    delay: float
    """Seconds of countdown/eta it was sent with (0: none)."""
    message: OutgoingMessage

    @property
    def task(self) -> str:
        return self.envelope.task

    @property
    def id(self) -> str:
        return self.envelope.id


class TestBroker:
    """An in-memory broker for an App: ``with TestBroker(app) as broker: ...``.

    While open, ``task.delay()``, ``apply_async()``, ``app.send_task()`` and their
    async twins publish into memory instead of RabbitMQ. ``queues`` limits the
    queues :meth:`run_all` consumes (default: every work queue of the topology,
    like ``amqpq worker`` without ``-Q``).
    """

    __test__ = False  # pytest: not a test class

    def __init__(
        self,
        app: App,
        *,
        eager: bool = False,
        queues: Sequence[str] | None = None,
        worker_name: str = "amqpq-testing",
    ) -> None:
        self.app = app
        self.eager = eager
        self.worker_name = worker_name
        self.memory = MemoryBroker(app.topology)
        self.queues = resolve_queues(app.topology, queues or ())
        self.stats = WorkerStats()
        self.sent: list[SentTask] = []
        self.producer = Producer(
            app.send_context,
            MemorySendTransport(
                self.memory, on_published=self._published, name="testing", hint=_NOT_RUN_YET
            ),
        )
        """The App's synchronous producer while the broker is open (``app.producer``)."""
        self.aproducer = AsyncProducer(
            app.send_context,
            MemoryAsyncSendTransport(
                self.memory, on_published=self._apublished, name="testing", hint=_NOT_RUN_YET
            ),
        )
        """The App's asyncio producer while the broker is open (``app.aproducer()``)."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: Pool | None = None
        self._deliver: DeliveryGuard | None = None
        self._draining = 0
        self._open = False
        self.chords = MemoryChordQueues()
        """The chords' queues of the workflows run here (docs/workflows.md)."""
        self.results = MemoryStore()
        """Every task's state by id, as a result store keeps it: while the broker is open,
        ``app.AsyncResult(task_id)`` reads from here (no Redis or PostgreSQL needed)."""

    def __repr__(self) -> str:
        return f"<TestBroker {self.app!r}{' eager' if self.eager else ''}>"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> TestBroker:
        """Route the App's producers into this broker (``with`` does it for you)."""
        self.app.use_producers((self.producer, self.aproducer))
        self.app.use_result_store(self.results)
        self._open = True
        return self

    def close(self) -> None:
        """Give the App its own producers back and stop the in-process worker."""
        if self._open:
            self.app.use_producers(None)
            self.app.use_result_store(None)
            self._open = False
        loop, thread, pool = self._loop, self._thread, self._pool
        self._loop = self._thread = self._pool = self._deliver = None
        if loop is None:
            return
        if pool is not None:
            asyncio.run_coroutine_threadsafe(pool.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        loop.close()

    def __enter__(self) -> TestBroker:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> TestBroker:
        return self.start()

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    # -- looking inside -----------------------------------------------------------------------

    def queue(self, name: str) -> QueueView:
        """What queue ``name`` holds: ``broker.queue("default").count`` / ``.tasks``."""
        return QueueView(self, name)

    def dead_letters(self, queue: str) -> list[Message]:
        """The dead letters of work queue ``queue`` (its ``<queue>.dlq``, or wherever the
        queue's own dead-letter exchange routes them), oldest first."""
        names: set[str] = set()
        if dead_letter_queue_name(queue) in self.memory.queues:
            names.add(dead_letter_queue_name(queue))
        target = dead_letter_targets(self.app.topology, [queue]).get(queue)
        if target is not None:
            names |= self.memory.route(target.exchange, target.routing_key or queue)
        with self.memory.lock:
            found = [
                (m.seq, Message(n, m)) for n in sorted(names) for m in self.memory.queues[n].ready
            ]
        return [message for _, message in sorted(found, key=lambda pair: pair[0])]

    def delayed(self) -> list[Message]:
        """Messages waiting in the delay levels (countdown, eta, retries), oldest first."""
        prefix = f"{self.app.topology.infrastructure.prefix}.delay."
        with self.memory.lock:
            found = [
                (m.seq, Message(q.name, m))
                for q in self.memory.queues.values()
                if q.name.startswith(prefix)
                for m in q.ready
            ]
        return [message for _, message in sorted(found, key=lambda pair: pair[0])]

    def route(
        self, exchange: str, routing_key: str = "", headers: Mapping[str, Any] | None = None
    ) -> set[str]:
        """The queues a message published to ``exchange`` with this key and headers reaches."""
        return self.memory.route(exchange, routing_key, headers)

    @property
    def now(self) -> float:
        """Virtual seconds since the broker was created."""
        return self.memory.clock

    def advance(self, seconds: float) -> None:
        """Fast-forward the clock: delays that end meanwhile land in their queues (ready to
        run with :meth:`run_all`)."""
        self.memory.advance(seconds)

    def publish(
        self,
        body: bytes | Mapping[str, Any],
        *,
        queue: str | None = None,
        exchange: str = "",
        routing_key: str = "",
        headers: Mapping[str, Any] | None = None,
        reply_to: str | None = None,
        message_id: str | None = None,
    ) -> set[str]:
        """Publish a raw message, as a plain AMQP client would (no validation, no route):
        to ``queue`` through the default exchange, or to ``exchange`` with ``routing_key``
        and ``headers``. A mapping body is sent as JSON. Returns the queues reached."""
        if isinstance(body, Mapping):
            if message_id is None and isinstance(body.get("id"), str):
                message_id = body["id"]
            body = json.dumps(body, default=str).encode()
        if queue is not None:
            exchange, routing_key = "", queue
        message = OutgoingMessage(
            body=body,
            properties=MessageProperties(
                message_id=message_id,
                correlation_id=message_id,
                reply_to=reply_to,
                headers=dict(headers or {}),
            ),
            exchange=exchange,
            routing_key=routing_key,
        )
        return set(self.memory.publish(message))

    # -- running tasks ------------------------------------------------------------------------

    def run_all(
        self,
        *,
        fast_forward: bool = False,
        queues: Sequence[str] | None = None,
        limit: int = _DEFAULT_LIMIT,
    ) -> int:
        """Run every ready task of the consumed queues (and those they send) until none is
        left; returns how many messages were handled.

        ``fast_forward=True`` also advances the clock each time nothing is ready but a
        delay is pending, so countdowns and retries run too. ``limit`` stops a task that
        retries forever: :class:`AmqpqError` after that many messages.
        """
        if self._draining:
            raise ConfigError(
                "run_all() called while tasks are running (from inside a task?); "
                "tasks sent by a task run in the same run_all()"
            )
        loop = self._runner()
        if threading.current_thread() is self._thread:
            raise ConfigError("run_all() cannot block the worker's loop: use await arun_all()")
        future = asyncio.run_coroutine_threadsafe(self._drain(fast_forward, queues, limit), loop)
        return future.result()

    async def arun_all(
        self,
        *,
        fast_forward: bool = False,
        queues: Sequence[str] | None = None,
        limit: int = _DEFAULT_LIMIT,
    ) -> int:
        """:meth:`run_all` for async tests: ``await broker.arun_all()``."""
        loop = self._runner()
        if asyncio.get_running_loop() is loop:
            return await self._drain(fast_forward, queues, limit)
        future = asyncio.run_coroutine_threadsafe(self._drain(fast_forward, queues, limit), loop)
        return await asyncio.wrap_future(future)

    def _runner(self) -> asyncio.AbstractEventLoop:
        """The worker side: an event loop in a thread of its own, with a pool and the handler."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="amqpq-testing-worker", daemon=True
                )
                thread.start()
                try:
                    asyncio.run_coroutine_threadsafe(self._start_handler(), loop).result(30)
                except BaseException:
                    loop.call_soon_threadsafe(loop.stop)
                    thread.join(10)
                    loop.close()
                    raise
                self._loop, self._thread = loop, thread
            return self._loop

    async def _start_handler(self) -> None:
        hooks = Hooks(self.app)
        pool = make_pool(PoolSpec("threads", _SLOTS), hooks)
        await pool.start()
        publisher = MemoryPublisher(self.memory)
        self._pool = pool
        self._deliver = build_handler(
            registry=self.app.registry,
            topology=self.app.topology,
            hooks=hooks,
            pool=pool,
            stats=self.stats,
            replies=publisher,
            direct_replies=publisher,
            republisher=publisher,
            options=HandlerOptions(
                worker_name=self.worker_name,
                queues=self.queues,
                rate_limits=False,
                bound_redeliveries=False,
                result_store=self.results,
                result_expires=self.app.result_expires,
            ),
            chords=self.chords,
        )

    def _consumed(self, queues: Sequence[str] | None) -> list[str]:
        if queues is None:
            return self.queues
        for name in queues:
            self.memory.queue(name)
        return list(queues)

    async def _drain(self, fast_forward: bool, queues: Sequence[str] | None, limit: int) -> int:
        names = self._consumed(queues)
        self._draining += 1
        try:
            handled = 0
            while True:
                item = self.memory.next_ready(names)
                if item is None:
                    due = self.memory.next_due() if fast_forward else None
                    if due is None:
                        return handled
                    self.memory.advance_to(due)
                    continue
                if handled >= limit:
                    self.memory.settle(item[2], "nack", requeue=True)
                    raise AmqpqError(
                        f"still busy after {limit} messages: a task that retries forever, "
                        "or tasks that keep sending each other?"
                    )
                await self._handle(*item)
                handled += 1
        finally:
            self._draining -= 1

    async def _handle(self, queue: str, message: StoredMessage, tag: int) -> None:
        deliver = self._deliver
        assert deliver is not None
        await deliver(
            MemoryDelivery(self.memory, queue, message, tag, f"{self.worker_name}.{queue}")
        )

    async def _run_copies(self, copies: Mapping[str, int]) -> None:
        """Run the copies one publish put into consumed queues, now (eager, inside a task)."""
        for queue, seq in copies.items():
            if queue in self.queues:
                item = self.memory.take(queue, seq)
                if item is not None:
                    await self._handle(*item)

    # -- what the producers publish (their memory transports report it) ------------------------

    def _published(self, message: OutgoingMessage, copies: Mapping[str, int]) -> None:
        if self._record(message):
            self._eager_sync(copies)

    async def _apublished(self, message: OutgoingMessage, copies: Mapping[str, int]) -> None:
        if self._record(message):
            await self._eager_async(copies)

    def _record(self, message: OutgoingMessage) -> bool:
        """Add a published task to :attr:`sent`; False for anything else (an event)."""
        headers = message.properties.headers
        if HEADER_TASK not in headers:
            return False
        envelope = decode_task(message.body, message.properties)
        delayed = HEADER_DELAY_EXCHANGE in headers or HEADER_DELAY_QUEUE in headers
        route_exchange = headers.get(HEADER_DELAY_EXCHANGE, "" if delayed else message.exchange)
        route_headers = {
            k: v for k, v in fresh_headers(headers).items() if k not in _ENVELOPE_HEADERS
        }
        delay_ms = 0
        if delayed and envelope.eta is not None and envelope.created_at is not None:
            delay_ms = math.ceil((envelope.eta - envelope.created_at).total_seconds() * 1000)
        self.sent.append(
            SentTask(
                envelope=envelope,
                exchange=str(headers.get(HEADER_DELAY_EXCHANGE, message.exchange)),
                routing_key=message.routing_key,
                headers=fresh_headers(headers),
                queues=self.producer.preparer.targets(
                    str(route_exchange), message.routing_key, route_headers
                ),
                delay=delay_ms / 1000,
                message=message,
            )
        )
        return True

    def _eager_sync(self, copies: Mapping[str, int]) -> None:
        if not self.eager:
            return
        loop = self._runner()
        on_loop = threading.current_thread() is self._thread
        if not self._draining:
            if on_loop:
                return  # cannot block the loop; the next drain runs it
            self.run_all(fast_forward=True)
        elif not on_loop:  # a sync task sent it: run it now, in another slot
            asyncio.run_coroutine_threadsafe(self._run_copies(copies), loop).result()

    async def _eager_async(self, copies: Mapping[str, int]) -> None:
        if not self.eager:
            return
        loop = self._runner()
        if asyncio.get_running_loop() is loop:
            if self._draining:
                await self._run_copies(copies)  # an async task sent it: run it now
            else:
                await self._drain(True, None, _DEFAULT_LIMIT)
        elif self._draining:
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self._run_copies(copies), loop)
            )
        else:
            await self.arun_all(fast_forward=True)
