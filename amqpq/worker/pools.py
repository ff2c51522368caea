"""Execution pools: where a task's code runs.

- :class:`LocalPool` (``threads`` and ``async``): ``async def`` tasks run on the
  event loop; synchronous tasks run in a thread pool, off the loop, so heartbeats
  and acks never stall. Time limits are cooperative here: the limit's exception
  is raised asynchronously in the task's thread (at its next Python bytecode; a
  blocking C call is not interrupted). Use processes for hard limits.
- :class:`ProcessPool` (``processes``): N child processes (``python -m
  amqpq.worker.child``) that import the app themselves from its ``-A`` spec and
  talk to the worker with length-prefixed JSON frames over pipes, never pickle.
  A child that dies is replaced and its message requeued; a hard ``time_limit``
  kills the child and the task fails with ``TimeLimitExceeded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import logging
import os
import queue
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from amqpq.envelope import ErrorInfo
from amqpq.errors import ConfigError
from amqpq.registry import Request, Task
from amqpq.worker.execution import (
    Outcome,
    call_async_task,
    call_sync_task,
    request_to_json,
)
from amqpq.worker.hooks import Hooks
from amqpq.worker.limits import SoftTimeLimitExceeded, TimeLimitExceeded

__all__ = ["Job", "LocalPool", "Pool", "ProcessPool", "read_frame", "write_frame"]

log = logging.getLogger("amqpq.worker")

AsyncProgress = Callable[[str, dict[str, Any] | None], Coroutine[Any, Any, None]]


class Job:
    """One task to run: validated arguments for local pools, the wire ones for children.

    The :class:`Request` is built on first use: most tasks (not bound, no hooks) never
    look at it, and a drained queue of tiny tasks should not pay for it.
    """

    __slots__ = (
        "_make_request",
        "_request",
        "args",
        "kwargs",
        "progress",
        "task",
        "wire_args",
        "wire_kwargs",
    )

    def __init__(
        self,
        task: Task[Any, Any],
        args: list[Any],
        kwargs: dict[str, Any],
        wire_args: list[Any],
        wire_kwargs: dict[str, Any],
        request: Callable[[], Request],
        progress: AsyncProgress,
    ) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.wire_args = wire_args
        self.wire_kwargs = wire_kwargs
        self._make_request = request
        self._request: Request | None = None
        self.progress = progress

    @property
    def request(self) -> Request:
        if self._request is None:
            self._request = self._make_request()
        return self._request


class Pool(Protocol):
    kind: str
    size: int

    async def start(self) -> None: ...

    async def run(self, job: Job) -> Outcome: ...

    async def close(self) -> None:
        """After the in-flight tasks finished: release threads or stop the children."""
        ...

    def terminate(self) -> None:
        """Stop now (second signal): kill children; threads are abandoned."""
        ...


# -- threads and async -----------------------------------------------------------------------


class SlotThreads:
    """A fixed set of threads fed by one queue: the cheapest hop off the event loop.

    About half the cost of ``run_in_executor`` per task (no concurrent Future to chain),
    which matters when a single slot drains tiny tasks. Daemon threads: a task stuck
    past the grace period must not keep the process alive.

    :meth:`run` may first wait for the result *on the loop's thread*, for at most
    ``INLINE_WAIT`` seconds, when nothing else can run (a one-slot worker): a tiny task
    then comes back with one thread wake-up instead of a trip through the loop's
    self-pipe, ``select`` and a scheduled callback (~110 us of a ~460 us prefetch-1
    cycle here). The loop is held for at most that long, far below any heartbeat; a
    longer task carries on in its thread and its result comes back through the loop.
    Outcomes come back through the loop in batches (:class:`_Completions`).
    """

    INLINE_WAIT = 0.001

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._completions = _Completions(loop)
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], Outcome], _Handoff | asyncio.Future[Outcome]] | None
        ]
        self._queue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"amqpq-task-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], Outcome]) -> asyncio.Future[Outcome]:
        """Run ``call`` in a task thread; its outcome comes back through the loop."""
        future: asyncio.Future[Outcome] = self._loop.create_future()
        self._queue.put((call, future))
        return future

    async def run(self, call: Callable[[], Outcome], *, inline_wait: bool) -> Outcome:
        """Run ``call`` in a task thread; with ``inline_wait``, wait briefly on this thread."""
        if not inline_wait:
            return await self.submit(call)
        handoff = _Handoff()
        self._queue.put((call, handoff))
        if handoff.done.acquire(timeout=self.INLINE_WAIT):
            return handoff.outcome()
        future: asyncio.Future[Outcome] = self._loop.create_future()
        if not handoff.attach(future):  # finished between the timeout and now
            return handoff.outcome()
        return await future

    def _work(self) -> None:
        get = self._queue.get
        completions = self._completions
        while True:
            item = get()
            if item is None:
                return
            call, target = item
            outcome: Outcome | None = None
            error: BaseException | None = None
            try:
                outcome = call()
            except BaseException as exc:  # an async exception landing outside the task's try
                error = exc
            if isinstance(target, _Handoff):
                delivered = target.finish(completions, outcome, error)
            else:
                delivered = completions.post(target, outcome, error)
            if not delivered:  # the loop is closed: the process is exiting
                return

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


class _Handoff:
    """One task's outcome on its way back to the loop: straight to a loop thread that is
    still waiting for it (``done``), or through the loop to a future attached since."""

    __slots__ = ("_error", "_finished", "_future", "_mutex", "_outcome", "done")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self._mutex = threading.Lock()
        self._future: asyncio.Future[Outcome] | None = None
        self._finished = False
        self._outcome: Outcome | None = None
        self._error: BaseException | None = None

    def attach(self, future: asyncio.Future[Outcome]) -> bool:
        """From now on the outcome goes to ``future``; False when it is already here."""
        with self._mutex:
            if self._finished:
                return False
            self._future = future
            return True

    def finish(
        self, completions: _Completions, outcome: Outcome | None, error: BaseException | None
    ) -> bool:
        """Called by the task thread; False once the loop is closed (the process exits)."""
        with self._mutex:
            self._outcome, self._error = outcome, error
            self._finished = True
            future = self._future
            if future is None:
                self.done.release()
                return True
        return completions.post(future, outcome, error)

    def outcome(self) -> Outcome:
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome


class _Completions:
    """Outcomes on their way back to the loop, as many per wake-up as have piled up.

    Each ``call_soon_threadsafe`` writes a byte to the loop's self-pipe and wakes it
    (the largest single cost of a busy multi-slot worker's loop in a profile: ~9%);
    a completion that finds others already waiting rides on their wake-up.
    """

    __slots__ = ("_items", "_lock", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Future[Outcome], Outcome | None, BaseException | None]]
        self._items = []

    def post(
        self, future: asyncio.Future[Outcome], outcome: Outcome | None, error: BaseException | None
    ) -> bool:
        """From a task thread; False once the loop is closed (the process is exiting)."""
        with self._lock:
            self._items.append((future, outcome, error))
            if len(self._items) > 1:
                return True  # a wake-up is already on its way for the first of them
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            return False
        return True

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for future, outcome, error in items:
            if future.done():  # cancelled meanwhile
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(outcome)  # type: ignore[arg-type]


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
                status="failure",
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


# -- processes -------------------------------------------------------------------------------

_HEADER = struct.Struct(">I")


def write_frame(fd: int, message: dict[str, Any]) -> None:
    """Blocking write of one frame (used by the child)."""
    data = json.dumps(message, separators=(",", ":"), default=str).encode()
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_frame(fd: int) -> dict[str, Any] | None:
    """Blocking read of one frame (used by the child); None at end of input."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    data = _read_exactly(fd, length)
    if data is None:
        return None
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("frame is not a JSON object")
    return message


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


class _Child:
    """The worker's side of one child process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout
        self.pid = process.pid

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), default=str).encode()
        self._stdin.write(_HEADER.pack(len(data)) + data)
        await self._stdin.drain()

    async def receive(self) -> dict[str, Any]:
        header = await self._stdout.readexactly(_HEADER.size)
        (length,) = _HEADER.unpack(header)
        message = json.loads(await self._stdout.readexactly(length))
        if not isinstance(message, dict):
            raise ValueError("frame is not a JSON object")
        return message

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def stop(self, timeout: float = 5.0) -> None:
        """End of input: the child exits after its current task; killed after ``timeout``."""
        with contextlib.suppress(Exception):
            self._stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.process.wait()

    def describe_exit(self) -> str:
        code = self.process.returncode
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exit code {code}"


class ProcessPool:
    """N child processes, each running one task at a time."""

    kind = "processes"

    def __init__(self, app_spec: str, size: int, *, cwd: str, start_timeout: float = 60.0) -> None:
        self.size = size
        self._spec = app_spec
        self._cwd = cwd
        self._start_timeout = start_timeout
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children: set[_Child] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._closing = False
        self._running: dict[Job, _Child] = {}

    async def start(self) -> None:
        children = await asyncio.gather(
            *(self._spawn() for _ in range(self.size)), return_exceptions=True
        )
        errors = [c for c in children if isinstance(c, BaseException)]
        for child in children:
            if isinstance(child, _Child):
                self._idle.put_nowait(child)
        if errors:
            self.terminate()
            raise errors[0]

    async def _spawn(self) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "amqpq.worker.child",
            self._spec,
            cwd=self._cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**20,
        )
        child = _Child(process)
        self._children.add(child)
        try:
            ready = await asyncio.wait_for(child.receive(), self._start_timeout)
        except (asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            child.kill()
            await process.wait()
            self._children.discard(child)
            raise ConfigError(
                f"a worker child process could not load -A {self._spec} "
                f"({child.describe_exit()}); its error is printed above"
            ) from exc
        if ready.get("op") != "ready":
            child.kill()
            self._children.discard(child)
            raise ConfigError(f"worker child process failed to start: {ready.get('message')}")
        log.debug("child process ready pid=%d", child.pid)
        return child

    def _replace(self) -> None:
        if self._closing:
            return
        task = asyncio.ensure_future(self._spawn_until_ready())
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    async def _spawn_until_ready(self) -> None:
        delay = 0.5
        while not self._closing:
            try:
                child = await self._spawn()
            except Exception as exc:
                log.error("replacing a child process failed: %s; retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            log.info("child process replaced pid=%d", child.pid)
            self._idle.put_nowait(child)
            return

    def terminate_job(self, job: Job) -> bool:
        """Kill the child running ``job`` (``revoke --terminate``); it is replaced. The
        task ends like a crash (``crashed``), which the consumer turns into REVOKED."""
        child = self._running.get(job)
        if child is None:
            return False
        log.warning("killing child pid=%d running task id=%s", child.pid, job.request.id)
        child.kill()
        return True

    async def run(self, job: Job) -> Outcome:
        child = await self._idle.get()
        self._running[job] = child
        try:
            return await self._run_on(child, job)
        finally:
            self._running.pop(job, None)

    async def _run_on(self, child: _Child, job: Job) -> Outcome:
        options = job.task.options
        deadline = time.monotonic() + options.time_limit if options.time_limit else None
        try:
            await child.send(
                {
                    "op": "run",
                    "task": job.task.name,
                    "args": job.wire_args,
                    "kwargs": job.wire_kwargs,
                    "request": request_to_json(job.request),
                    "soft_time_limit": options.soft_time_limit,
                }
            )
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                message = await asyncio.wait_for(child.receive(), timeout)
                if message.get("op") == "progress":
                    try:
                        await job.progress(str(message.get("state")), message.get("meta"))
                    except Exception as exc:
                        log.warning("progress reply failed task_id=%s: %r", job.request.id, exc)
                    continue
                outcome = Outcome.from_json(message["outcome"])
                break
        except TimeoutError:
            child.kill()
            await child.process.wait()
            self._children.discard(child)
            log.error(
                "task %s id=%s ran past its time limit of %ss: child pid=%d killed",
                job.task.name,
                job.request.id,
                options.time_limit,
                child.pid,
            )
            self._replace()
            return Outcome(
                status="failure",
                error=ErrorInfo(
                    type=TimeLimitExceeded.__name__,
                    message=f"task {job.task.name} ran longer than {options.time_limit}s",
                ),
            )
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, KeyError) as exc:
            child.kill()
            await child.process.wait()
            self._children.discard(child)
            self._replace()
            return Outcome(
                status="crashed",
                error=ErrorInfo(
                    type="WorkerLostError",
                    message=f"child process pid={child.pid} died while running the task "
                    f"({child.describe_exit()}; {type(exc).__name__})",
                ),
            )
        except BaseException:
            # Cancelled (shutdown): the child's state is unknown, do not reuse it.
            child.kill()
            self._children.discard(child)
            raise
        self._idle.put_nowait(child)
        return outcome

    async def close(self) -> None:
        self._closing = True
        for task in list(self._spawning):
            task.cancel()
        await asyncio.gather(*(child.stop() for child in list(self._children)))
        self._children.clear()

    def terminate(self) -> None:
        self._closing = True
        for task in list(self._spawning):
            task.cancel()
        for child in list(self._children):
            child.kill()
        self._children.clear()
