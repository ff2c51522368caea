"""Results: :class:`AsyncResult`, and the correlation map that routes replies to it.

Replies travel over RabbitMQ direct reply-to by default: each producer consumes
``amq.rabbitmq.reply-to`` on its publishing channel, and a :class:`ReplyRouter`
hands each reply to the waiting result by ``correlation_id`` (= task id), so any
number of calls can be in flight per process. A reply nobody waits for (a late
one, or one for a result object that was dropped) is ignored.

Direct reply-to replies exist only while the channel that sent the task is
open: after a reconnect, :meth:`AsyncResult.get` raises a :class:`BrokerError`
saying the reply was lost. A durable result queue (``result_queue=``) survives
reconnects, restarts and other processes. With a result store (``result_backend=``),
``app.AsyncResult(task_id)`` reads a task's state by id from any process, any number of
times (:mod:`amqpq.results`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from amqpq.celery_wire import decode_any_reply
from amqpq.envelope import FINAL_STATES, Reply, TaskState
from amqpq.errors import (
    BrokerError,
    ChordError,
    ConfigError,
    DecodeError,
    RemoteTaskError,
    ResultTimeoutError,
    TaskExpiredError,
    TaskRejectedError,
    TaskRevokedError,
)
from amqpq.wire import DIRECT_REPLY_TO

__all__ = [
    "DIRECT_REPLY_TO",
    "AsyncResult",
    "PendingResult",
    "ReplyRouter",
    "ResultBackend",
    "ResultLinks",
    "ResultSource",
    "remote_error",
]

log = logging.getLogger("amqpq.rpc")


_ERRORS: dict[TaskState, type[RemoteTaskError]] = {
    TaskState.FAILURE: RemoteTaskError,
    TaskState.REVOKED: TaskRevokedError,
    TaskState.EXPIRED: TaskExpiredError,
    TaskState.REJECTED: TaskRejectedError,
}


def remote_error(reply: Reply) -> RemoteTaskError:
    """The exception a failed reply stands for (FAILURE, REVOKED, EXPIRED or REJECTED)."""
    cls = _ERRORS.get(reply.state, RemoteTaskError)
    if reply.error is not None and reply.error.type == "ChordError":
        cls = ChordError
    if reply.error is None:
        return cls(reply.state.value, "", None, task_id=reply.id)
    return cls(reply.error.type, reply.error.message, reply.error.traceback, task_id=reply.id)


class PendingResult:
    """What is known about one task's result; updated by the router as replies arrive."""

    __slots__ = ("__weakref__", "convert", "event", "generation", "id", "lost", "reply", "task")

    def __init__(
        self, task_id: str, task: str | None, convert: Callable[[Any], Any] | None = None
    ) -> None:
        self.id = task_id
        self.task = task
        self.convert = convert
        self.reply: Reply | None = None
        self.lost: str | None = None
        self.generation: int | None = None
        self.event: asyncio.Event | None = None  # set by the async producer's loop

    @property
    def state(self) -> TaskState:
        return self.reply.state if self.reply is not None else TaskState.PENDING

    @property
    def final(self) -> bool:
        return self.reply is not None and self.reply.state in FINAL_STATES

    @property
    def settled(self) -> bool:
        """Nothing more will arrive: a final reply, or the reply path is gone."""
        return self.final or self.lost is not None


class ReplyRouter:
    """The correlation map of one reply path: task id -> :class:`PendingResult`, held weakly."""

    def __init__(self) -> None:
        self._pending: weakref.WeakValueDictionary[str, PendingResult] = (
            weakref.WeakValueDictionary()
        )
        self.changed = threading.Condition(threading.Lock())

    def add(self, pending: PendingResult) -> None:
        self._pending[pending.id] = pending

    def discard(self, pending: PendingResult) -> None:
        if self._pending.get(pending.id) is pending:
            del self._pending[pending.id]

    def wanted(self) -> set[str]:
        return {task_id for task_id, p in list(self._pending.items()) if not p.settled}

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._pending

    def dispatch(self, correlation_id: str | None, body: bytes) -> None:
        """Hand one reply to whoever waits for it; anything else is logged and dropped."""
        pending = self._pending.get(correlation_id) if correlation_id else None
        if pending is None:
            log.debug("dropping a reply for unknown task id %r", correlation_id)
            return
        try:
            reply = decode_any_reply(body)  # an amqpq worker's, or a Celery worker's (rpc://)
        except DecodeError as exc:
            log.warning("dropping an undecodable reply for task %s: %s", correlation_id, exc)
            return
        if pending.final:
            return  # a duplicate after a redelivery: the first final reply wins
        pending.reply = reply
        if pending.final:
            del self._pending[pending.id]
        self._notify(pending)

    def lose(self, reason: str, generation: int | None = None) -> None:
        """The reply path broke: fail every result published on it (or on ``generation``)."""
        for pending in list(self._pending.values()):
            if pending.settled or pending.generation is None:
                continue
            if generation is None or pending.generation == generation:
                pending.lost = reason
                self.discard(pending)
                self._notify(pending)

    def _notify(self, pending: PendingResult) -> None:
        if pending.event is not None:
            pending.event.set()
        with self.changed:
            self.changed.notify_all()


class ResultBackend(Protocol):
    """Where an :class:`AsyncResult` waits: a producer's reply path or a durable queue."""

    def wait(self, pending: PendingResult, timeout: float | None) -> None:
        """Block until ``pending.settled`` or the timeout (no exception on timeout)."""
        ...

    async def await_(self, pending: PendingResult, timeout: float | None) -> None:
        """Async twin of :meth:`wait`."""
        ...

    def refresh(self, pending: PendingResult) -> None:
        """Take in replies that have already arrived, without waiting."""
        ...


@dataclass(frozen=True, slots=True)
class ResultLinks:
    """What a result handle reaches beyond its reply path; the App builds one and hands
    it to its producers, which give it to every handle they create."""

    revoke: Callable[[Sequence[str], bool], None]
    """``(task ids, terminate)``: revoke from synchronous code."""
    arevoke: Callable[[Sequence[str], bool], Awaitable[None]]
    """``(task ids, terminate)``: revoke from asyncio code."""
    result_from_wire: Callable[[str, Any], Any]
    """``(task name, JSON value)`` -> the task's return value (typed by its hints when known)."""


class ResultSource(Protocol):
    """What ``AsyncResult(task_id, app=app)`` asks the App for (rpc never imports it)."""

    def result_parts(self, task_id: str) -> tuple[ResultBackend, ResultLinks | None]:
        """The result store's backend for ``task_id`` and the App's links; ConfigError
        when the App has no result store."""
        ...


class _HasProducer(Protocol):
    """Where :meth:`AsyncResult.from_queue` finds a producer (an App)."""

    @property
    def producer(self) -> _QueueResultSource: ...


class _QueueResultSource(Protocol):
    def result_from_queue(self, task_id: str, queue: str) -> AsyncResult: ...


class AsyncResult:
    """The handle on a sent task: ``r.get(timeout=10)``, ``r.state``, ``r.info``.

    ``state`` is PENDING until a reply arrives; STARTED, PROGRESS and RETRY are
    intermediate; SUCCESS, FAILURE, REVOKED, EXPIRED and REJECTED are final.
    """

    revoke_hook: ClassVar[Callable[[AsyncResult, bool], None] | None] = None
    """How :meth:`revoke` reaches the workers when not through the broker (tests may set it)."""

    def __init__(
        self,
        task_id: str,
        *,
        task: str | None = None,
        backend: ResultBackend | None = None,
        pending: PendingResult | None = None,
        links: ResultLinks | None = None,
        app: ResultSource | None = None,
    ) -> None:
        if app is not None:  # AsyncResult("order-42", app=app): read from the App's store
            backend, links = app.result_parts(task_id)
        self.id = task_id
        self.task_name = task
        self._links = links
        self._backend = backend
        self._pending = pending or PendingResult(task_id, task)
        self.parent: Any = None
        self.revoke_also: list[str] = []
        """Task ids :meth:`revoke` revokes with this one (a chord's result: its header)."""
        """In a workflow, the result this one's task received (a chain's previous task, a
        chord's header as a ``GroupResult``); else None."""

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id} {self.task_name or '?'} {self.state.value}>"

    @classmethod
    def from_queue(cls, app: _HasProducer, task_id: str, queue: str) -> AsyncResult:
        """Collect the result of ``task_id`` from a durable result queue, e.g. in another
        process than the one that sent the task (``apply_async(..., result_queue=queue)``)."""
        return app.producer.result_from_queue(task_id, queue)

    # -- state ------------------------------------------------------------------------------

    def _refresh(self) -> None:
        if self._backend is not None and not self._pending.settled:
            self._backend.refresh(self._pending)

    @property
    def state(self) -> TaskState:
        self._refresh()
        return self._pending.state

    @property
    def status(self) -> TaskState:
        """Alias of :attr:`state`."""
        return self.state

    def ready(self) -> bool:
        """True once the task reached a final state."""
        self._refresh()
        return self._pending.final

    def successful(self) -> bool:
        return self.state is TaskState.SUCCESS

    def failed(self) -> bool:
        self._refresh()
        return self._pending.final and self._pending.state is not TaskState.SUCCESS

    @property
    def reply(self) -> Reply | None:
        """The last reply received, as sent by the worker."""
        self._refresh()
        return self._pending.reply

    @property
    def info(self) -> Any:
        """Progress meta (STARTED, PROGRESS, RETRY), the result (SUCCESS) or the error (failed)."""
        reply = self.reply
        if reply is None:
            return None
        if reply.state is TaskState.SUCCESS:
            return self._value(reply)
        if reply.state in FINAL_STATES:
            return remote_error(reply)
        return reply.meta

    @property
    def result(self) -> Any:
        """The return value once SUCCESS, the error once failed, else None (never waits)."""
        reply = self.reply
        if reply is None or reply.state not in FINAL_STATES:
            return None
        return self.info

    @property
    def traceback(self) -> str | None:
        reply = self.reply
        return reply.error.traceback if reply is not None and reply.error is not None else None

    def _value(self, reply: Reply) -> Any:
        convert = self._pending.convert
        if convert is not None:
            return convert(reply.result)
        if self._links is not None and reply.task:
            return self._links.result_from_wire(reply.task, reply.result)
        return reply.result

    # -- waiting ----------------------------------------------------------------------------

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the final reply and return the task's return value.

        Raises :class:`RemoteTaskError` (or TaskRevokedError, TaskExpiredError,
        TaskRejectedError) when the task did not succeed and ``propagate`` is true,
        :class:`ResultTimeoutError` after ``timeout`` seconds (None: wait forever).
        """
        if timeout is not None and timeout < 0:
            raise ConfigError("timeout must be >= 0")
        backend = self._need_backend()
        if not self._pending.settled:
            backend.wait(self._pending, timeout)
        return self._outcome(timeout, propagate)

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """``get`` for asyncio code: ``await r.aget(timeout=10)``."""
        if timeout is not None and timeout < 0:
            raise ConfigError("timeout must be >= 0")
        backend = self._need_backend()
        if not self._pending.settled:
            await backend.await_(self._pending, timeout)
        return self._outcome(timeout, propagate)

    def wait(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Alias of :meth:`get`."""
        return self.get(timeout=timeout, propagate=propagate)

    def _need_backend(self) -> ResultBackend:
        if self._backend is None:
            raise ConfigError(
                f"no result can be collected for task {self.id}: it was sent with "
                "ignore_result, or this handle was made from an id without a result store "
                "(set result_backend= or AMQPQ_RESULT_BACKEND, see docs/results.md)"
            )
        return self._backend

    # -- stored results (a result store's handle) -------------------------------------------

    async def arefresh(self) -> TaskState:
        """Read the state again without blocking the loop (a result store's handle);
        then ``state``, ``info``, ``result`` and ``ready()`` answer from it."""
        arefresh = getattr(self._backend, "arefresh", None)
        if arefresh is not None and not self._pending.settled:
            await arefresh(self._pending)
        return self._pending.state

    def forget(self) -> None:
        """Delete this task's stored result now (a result store's handle)."""
        self._need_store("forget")(self._pending)

    async def aforget(self) -> None:
        """:meth:`forget` for asyncio code."""
        await self._need_store("aforget")(self._pending)

    def _need_store(self, method: str) -> Any:
        found = getattr(self._backend, method, None)
        if found is None:
            raise ConfigError(
                f"task {self.id}: forget() needs a result store; this result is not stored"
            )
        return found

    def _outcome(self, timeout: float | None, propagate: bool) -> Any:
        pending = self._pending
        if not pending.final:
            if pending.lost is not None:
                raise BrokerError(
                    f"the result of task {self.id} is lost: {pending.lost}; direct reply-to "
                    "replies do not survive a reconnect (send with result_queue= for results "
                    "that must)"
                )
            within = f" within {timeout:g}s" if timeout is not None else ""
            raise ResultTimeoutError(
                f"no result for task {self.id} ({self.task_name or 'unknown task'}){within} "
                f"(state {pending.state.value})"
            )
        reply = pending.reply
        assert reply is not None
        if reply.state is TaskState.SUCCESS:
            return self._value(reply)
        error = remote_error(reply)
        if propagate:
            raise error
        return error

    def revoke(self, terminate: bool = False) -> None:
        """Ask every worker not to run this task (stored on the broker for 24 h).

        A worker that consumes it acks it without running it and answers REVOKED.
        ``terminate=True`` also stops it where it runs now, if its pool can (processes).
        """
        hook = type(self).revoke_hook
        if hook is not None:
            hook(self, terminate)
            return
        self._need_links().revoke([self.id, *self.revoke_also], terminate)

    async def arevoke(self, terminate: bool = False) -> None:
        """:meth:`revoke` for asyncio code."""
        await self._need_links().arevoke([self.id, *self.revoke_also], terminate)

    @property
    def links(self) -> ResultLinks | None:
        """What this handle reaches beyond its reply path (None for a bare handle)."""
        return self._links

    def _need_links(self) -> ResultLinks:
        if self._links is None:
            raise ConfigError(
                f"task {self.id}: revoking needs the App; use a handle its producers returned"
            )
        return self._links


def deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()
