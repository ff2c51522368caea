"""The ``threads``, ``async`` and ``solo`` pools: tasks run in the worker process itself.

``async def`` tasks run on the event loop; synchronous tasks run in task threads
(:mod:`amqpq.worker.pools.handoff`), off the loop, so heartbeats and acks never
stall. Time limits are cooperative here: the limit's exception is raised
asynchronously in the task's thread (at its next Python bytecode; a blocking C
call is not interrupted). Use processes for hard limits.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import threading
import time
from typing import Any

from amqpq.envelope import ErrorInfo
from amqpq.registry import Request
from amqpq.worker.execution import Outcome, Status, call_async_task, call_sync_task
from amqpq.worker.hooks import Hooks
from amqpq.worker.limits import SoftTimeLimitExceeded, TimeLimitExceeded
from amqpq.worker.pools.base import Job
from amqpq.worker.pools.handoff import SlotThreads

__all__ = ["LocalPool"]

log = logging.getLogger("amqpq.worker")


class LocalPool:
    """``async def`` tasks on the loop, synchronous ones in ``threads`` threads.

    ``solo``: synchronous tasks too run on the loop's thread, one at a time, with no
    hand-off at all: the cheapest way through many tiny tasks. While such a task runs
    the connection is not serviced (heartbeats, control requests, signals wait for
    it), so a task longer than ``stall_warning`` (the AMQP heartbeat) is logged: the
    broker drops a connection after two missed heartbeats and requeues its message.
    Tasks with time limits still run in a thread, where their limits can fire.
    """

    def __init__(
        self, kind: str, size: int, threads: int, hooks: Hooks, *, stall_warning: float = 0.0
    ) -> None:
        self.kind = kind
        self.size = size
        self._inline = kind == "solo"
        self._stall_warning = stall_warning
        self._threads = threads
        self._hooks = hooks if hooks.any_task_hooks else None
        self._executor: SlotThreads | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_tasks: dict[Job, asyncio.Task[Outcome]] = {}  # running, for terminate
        self._terminating: set[Job] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = SlotThreads(self._threads, self._loop)

    def terminate_job(self, job: Job) -> bool:
        """Cancel a running ``async def`` task (``revoke --terminate``); a synchronous one
        runs in a thread, which cannot be stopped from outside: False."""
        running = self._async_tasks.get(job)
        if running is None or running.done():
            return False
        self._terminating.add(job)
        running.cancel()
        return True

    async def run(self, job: Job) -> Outcome:
        if job.task.is_async:
            return await self._run_async(job)
        loop = self._loop
        assert loop is not None
        assert self._executor is not None
        options = job.task.options
        if options.soft_time_limit or options.time_limit:
            return await self._run_limited(job, loop)
        if self._inline:
            return await self._run_inline(job)
        # One slot, one message in flight (prefetch 1): nothing else needs the loop for the
        # next millisecond. With more slots, the loop had better read the next deliveries.
        return await self._executor.run(
            functools.partial(self._call, job, None), inline_wait=self.size == 1
        )

    async def _run_inline(self, job: Job) -> Outcome:
        progress = _LoopProgress(job)
        started = time.monotonic()
        outcome = call_sync_task(
            job.task, job.args, job.kwargs, self._request_for(job), progress, self._hooks
        )
        runtime = time.monotonic() - started
        if self._stall_warning and runtime > self._stall_warning:
            log.warning(
                "task %s ran %.1fs on the solo pool, holding the connection that long "
                "(heartbeat %ss): the broker closes it after two missed heartbeats and "
                "requeues the task; run tasks this long with --pool threads",
                job.task.name,
                runtime,
                self._stall_warning,
            )
        await progress.sent()
        return outcome

    def _request_for(self, job: Job) -> Request | None:
        return job.request if job.task.options.bind or self._hooks is not None else None

    async def _run_async(self, job: Job) -> Outcome:
        progress = _LoopProgress(job)
        # A task of its own, so that terminate_job can cancel the task and nothing else.
        running = asyncio.ensure_future(
            call_async_task(
                job.task, job.args, job.kwargs, self._request_for(job), progress, self._hooks
            )
        )
        self._async_tasks[job] = running
        try:
            outcome = await running
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if job not in self._terminating or (current is not None and current.cancelling()):
                raise  # the worker itself is being stopped
            outcome = Outcome(
                status=Status.FAILURE,
                error=ErrorInfo(type="TaskRevokedError", message="terminated while running"),
            )
        finally:
            self._async_tasks.pop(job, None)
            self._terminating.discard(job)
        await progress.sent()
        return outcome

    def _call(self, job: Job, watch: _ThreadWatch | None) -> Outcome:
        loop = self._loop
        assert loop is not None

        def progress(state: str, meta: dict[str, Any] | None) -> None:
            future = asyncio.run_coroutine_threadsafe(job.progress(state, meta), loop)
            try:
                future.result(timeout=30)
            except Exception as exc:  # progress is best effort; the task goes on
                log.warning("progress reply failed task_id=%s: %r", job.request.id, exc)

        request = self._request_for(job)
        if watch is None:
            return call_sync_task(job.task, job.args, job.kwargs, request, progress, self._hooks)
        watch.started()
        try:
            return call_sync_task(job.task, job.args, job.kwargs, request, progress, self._hooks)
        finally:
            watch.finished()

    async def _run_limited(self, job: Job, loop: asyncio.AbstractEventLoop) -> Outcome:
        options = job.task.options
        watch = _ThreadWatch()
        timers = []
        if options.soft_time_limit:
            timers.append(
                loop.call_later(options.soft_time_limit, watch.inject, SoftTimeLimitExceeded)
            )
        if options.time_limit:
            timers.append(loop.call_later(options.time_limit, watch.inject, TimeLimitExceeded))
        assert self._executor is not None
        try:
            return await self._executor.submit(functools.partial(self._call, job, watch))
        finally:
            for timer in timers:
                timer.cancel()

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()

    def terminate(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()


class _LoopProgress:
    """``update_state`` of a task running on the loop's own thread: each progress reply is
    scheduled, not waited for (the task holds the loop), and all go out before the final."""

    __slots__ = ("_job", "_pending")

    def __init__(self, job: Job) -> None:
        self._job = job
        self._pending: list[asyncio.Future[None]] = []

    def __call__(self, state: str, meta: dict[str, Any] | None) -> None:
        self._pending.append(asyncio.ensure_future(self._job.progress(state, meta)))

    async def sent(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class _ThreadWatch:
    """Raises a time-limit exception inside the thread running one task, if it still runs it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread_id: int | None = None

    def started(self) -> None:
        with self._lock:
            self._thread_id = threading.get_ident()

    def finished(self) -> None:
        with self._lock:
            self._thread_id = None

    def inject(self, exc_type: type[BaseException]) -> None:
        with self._lock:
            if self._thread_id is None:
                return
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread_id), ctypes.py_object(exc_type)
            )
