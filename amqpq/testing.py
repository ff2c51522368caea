"""Unit-testing code that uses amqpq, without RabbitMQ.

::

    from amqpq.testing import TestBroker

    def test_signup_sends_a_welcome_mail() -> None:
        with TestBroker(app) as broker:        # the app's producers now publish into memory
            signup("ada@example.com")          # code under test calls send_email.delay(...)
            assert broker.queue("high_priority").tasks[0].task == "tasks.send_email"
            broker.run_all()                   # run them in-process, as a worker would
            assert outbox == ["ada@example.com"]

:class:`TestBroker` swaps the App's producers for in-memory twins. Tasks are
prepared exactly as the real producers prepare them (argument validation,
routes, options, the static "reaches no queue" check) and published into a
:class:`~amqpq.transport.memory.MemoryBroker`, which routes them with the
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
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from amqpq.codec import (
    HEADER_ERROR_MESSAGE,
    HEADER_ERROR_TYPE,
    HEADER_REASON,
    HEADER_TASK,
    MessageProperties,
    OutgoingMessage,
    decode_task,
    fresh_headers,
)
from amqpq.delay import HEADER_DELAY_EXCHANGE
from amqpq.envelope import TaskEnvelope
from amqpq.errors import AmqpqError, ConfigError, DecodeError, ResultTimeoutError
from amqpq.producer import PreparedTask, TaskCall, TaskPreparer
from amqpq.rpc import AsyncResult, PendingResult, ReplyRouter
from amqpq.topology.infra import dead_letter_queue_name
from amqpq.transport.memory import MemoryBroker, MemoryDelivery, MemoryPublisher, StoredMessage
from amqpq.worker.deadletter import dead_letter_targets
from amqpq.worker.factory import DeliveryGuard, HandlerOptions, PoolSpec, build_handler, make_pool
from amqpq.worker.hooks import Hooks
from amqpq.worker.options import resolve_queues
from amqpq.worker.pools import Pool
from amqpq.worker.stats import WorkerStats

if TYPE_CHECKING:
    from amqpq.app import App
    from amqpq.producer import AsyncProducer, Producer
    from amqpq.registry import Task

__all__ = ["Message", "QueueView", "SentTask", "TestBroker"]

log = logging.getLogger("amqpq.testing")

# Tasks run one at a time; the extra slots let a task that sends another task in eager
# mode run it inline (a sync task waits in its thread while the inner one takes another).
_SLOTS = 8
_DEFAULT_LIMIT = 10_000


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
        self.producer = MemoryProducer(self)
        self.aproducer = MemoryAsyncProducer(self)
        self._replies = ReplyRouter()
        self._direct = _DirectResults(self)
        self._result_queues: dict[str, _QueueResults] = {}
        self.memory.on_direct_reply = self._replies.dispatch
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: Pool | None = None
        self._deliver: DeliveryGuard | None = None
        self._draining = 0
        self._open = False

    def __repr__(self) -> str:
        return f"<TestBroker {self.app!r}{' eager' if self.eager else ''}>"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> TestBroker:
        """Route the App's producers into this broker (``with`` does it for you)."""
        self.app.use_producers(
            (cast("Producer", self.producer), cast("AsyncProducer", self.aproducer))
        )
        self._open = True
        return self

    def close(self) -> None:
        """Give the App its real producers back and stop the in-process worker."""
        if self._open:
            self.app.use_producers(None)
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
            republisher=publisher,
            options=HandlerOptions(
                worker_name=self.worker_name,
                queues=self.queues,
                rate_limits=False,
                bound_redeliveries=False,
            ),
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

    # -- sending (used by the memory producers) -----------------------------------------------

    def _publish(self, prepared: PreparedTask) -> tuple[AsyncResult, dict[str, int]]:
        pending: PendingResult | None = None
        backend: _DirectResults | _QueueResults | None = None
        router = self._replies
        if prepared.reply_to is not None:
            pending = PendingResult(
                prepared.envelope.id, prepared.envelope.task, prepared.convert()
            )
            queue = prepared.result_queue
            if queue:
                self.memory.declare_queue(queue)
                backend = self._queue_results(queue)
                router = backend.router
            else:
                backend = self._direct
            router.add(pending)
        try:
            copies = self.memory.publish(prepared.message)
        except BaseException:
            if pending is not None:
                router.discard(pending)
            raise
        message = prepared.message
        headers = message.properties.headers
        self.sent.append(
            SentTask(
                envelope=prepared.envelope,
                exchange=str(headers.get(HEADER_DELAY_EXCHANGE, message.exchange)),
                routing_key=message.routing_key,
                headers=fresh_headers(headers),
                queues=prepared.targets,
                delay=prepared.delay_ms / 1000,
                message=message,
            )
        )
        result = AsyncResult(
            prepared.envelope.id,
            task=prepared.envelope.task,
            backend=backend,
            pending=pending,
            app=self.app,
        )
        return result, copies

    def _queue_results(self, queue: str) -> _QueueResults:
        results = self._result_queues.get(queue)
        if results is None:
            results = self._result_queues[queue] = _QueueResults(self, queue)
        return results

    def _result_from_queue(self, task_id: str, queue: str) -> AsyncResult:
        self.memory.declare_queue(queue)
        results = self._queue_results(queue)
        pending = PendingResult(task_id, None)
        results.router.add(pending)
        return AsyncResult(task_id, backend=results, pending=pending, app=self.app)

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


def _not_ready(pending: PendingResult) -> ResultTimeoutError:
    return ResultTimeoutError(
        f"no result for task {pending.id} ({pending.task or 'unknown task'}) yet (state "
        f"{pending.state.value}): the test broker runs tasks only when asked; call "
        "broker.run_all() (fast_forward=True for countdowns and retries) before get(), "
        "or use TestBroker(app, eager=True)"
    )


class _DirectResults:
    """The ResultBackend of direct reply-to results: replies arrive while tasks run."""

    def __init__(self, broker: TestBroker) -> None:
        self.broker = broker

    def wait(self, pending: PendingResult, timeout: float | None) -> None:
        if not pending.settled:
            raise _not_ready(pending)

    async def await_(self, pending: PendingResult, timeout: float | None) -> None:
        self.wait(pending, timeout)

    def refresh(self, pending: PendingResult) -> None:
        return None


class _QueueResults:
    """Results collected from a durable result queue held by the memory broker."""

    def __init__(self, broker: TestBroker, queue: str) -> None:
        self.broker = broker
        self.queue = queue
        self.router = ReplyRouter()

    def _collect(self) -> None:
        wanted = self.router.wanted()
        if not wanted:
            return
        memory = self.broker.memory
        with memory.lock:
            queue = memory.queue(self.queue)
            found = [m for m in queue.ready if m.properties.correlation_id in wanted]
            for message in found:
                queue.ready.remove(message)
        for message in found:
            self.router.dispatch(message.properties.correlation_id, message.body)

    def wait(self, pending: PendingResult, timeout: float | None) -> None:
        self._collect()
        if not pending.settled:
            raise _not_ready(pending)

    async def await_(self, pending: PendingResult, timeout: float | None) -> None:
        self.wait(pending, timeout)

    def refresh(self, pending: PendingResult) -> None:
        self._collect()


def _raise_first(errors: list[BaseException], total: int) -> None:
    if errors:
        if total > 1:
            errors[0].add_note(
                f"{len(errors)} of {total} tasks in this batch were not sent; the rest were"
            )
        raise errors[0]


def _calls(name: str, iterable: Iterable[Any], options: Mapping[str, Any]) -> list[TaskCall]:
    calls = []
    for item in iterable:
        if isinstance(item, Mapping):
            calls.append(TaskCall(name, (), item, options))
        elif isinstance(item, list | tuple):
            calls.append(TaskCall(name, item, {}, options))
        else:
            calls.append(TaskCall(name, (item,), {}, options))
    return calls


class MemoryProducer:
    """The in-memory twin of :class:`amqpq.producer.Producer` (what ``app.producer`` returns
    inside a :class:`TestBroker`)."""

    def __init__(self, broker: TestBroker) -> None:
        self.app = broker.app
        self.preparer = TaskPreparer(broker.app)
        self._broker = broker

    def __repr__(self) -> str:
        return f"<MemoryProducer {self.app!r}>"

    def connect(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send_task(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        prepared = self.preparer.prepare(name, args, kwargs, options)
        result, copies = self._broker._publish(prepared)
        self._broker._eager_sync(copies)
        return result

    def send_many(self, calls: Iterable[TaskCall]) -> list[AsyncResult]:
        prepared = [self.preparer.prepare(c.name, c.args, c.kwargs, c.options) for c in calls]
        results: list[AsyncResult] = []
        errors: list[BaseException] = []
        for p in prepared:
            try:
                result, copies = self._broker._publish(p)
            except AmqpqError as exc:
                errors.append(exc)
                continue
            results.append(result)
            self._broker._eager_sync(copies)
        _raise_first(errors, len(prepared))
        return results

    def map(
        self, task: str | Task[Any, Any], iterable: Iterable[Any], **options: Any
    ) -> list[AsyncResult]:
        name = task if isinstance(task, str) else task.name
        return self.send_many(_calls(name, iterable, options))

    def result_from_queue(self, task_id: str, queue: str) -> AsyncResult:
        return self._broker._result_from_queue(task_id, queue)


class MemoryAsyncProducer:
    """The in-memory twin of :class:`amqpq.producer.AsyncProducer`."""

    def __init__(self, broker: TestBroker) -> None:
        self.app = broker.app
        self.preparer = TaskPreparer(broker.app)
        self._broker = broker

    def __repr__(self) -> str:
        return f"<MemoryAsyncProducer {self.app!r}>"

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> MemoryAsyncProducer:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def send_task(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        prepared = self.preparer.prepare(name, args, kwargs, options)
        result, copies = self._broker._publish(prepared)
        await self._broker._eager_async(copies)
        return result

    async def send_many(
        self, calls: Iterable[TaskCall], *, concurrency: int = 1000
    ) -> list[AsyncResult]:
        prepared = [self.preparer.prepare(c.name, c.args, c.kwargs, c.options) for c in calls]
        results: list[AsyncResult] = []
        errors: list[BaseException] = []
        for p in prepared:
            try:
                result, copies = self._broker._publish(p)
            except AmqpqError as exc:
                errors.append(exc)
                continue
            results.append(result)
            await self._broker._eager_async(copies)
        _raise_first(errors, len(prepared))
        return results

    async def map(
        self, task: str | Task[Any, Any], iterable: Iterable[Any], **options: Any
    ) -> list[AsyncResult]:
        name = task if isinstance(task, str) else task.name
        return await self.send_many(_calls(name, iterable, options))

    def result_from_queue(self, task_id: str, queue: str) -> AsyncResult:
        return self._broker._result_from_queue(task_id, queue)
