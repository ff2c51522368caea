"""The ``processes`` pool: N child processes, each running one task at a time.

Each child (``python -m amqpq.worker.child``) imports the app itself from its
``-A`` spec and talks to the worker with the frames of
:mod:`amqpq.worker.pools.frames` over pipes, never pickle. A child that dies is
replaced and its message requeued; a hard ``time_limit`` kills the child and the
task fails with ``TimeLimitExceeded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

from amqpq.envelope import ErrorInfo
from amqpq.errors import ConfigError
from amqpq.worker.execution import Outcome, Status, request_to_json
from amqpq.worker.limits import TimeLimitExceeded
from amqpq.worker.pools.base import Job
from amqpq.worker.pools.frames import encode_frame, receive_frame

__all__ = ["ProcessPool"]

log = logging.getLogger("amqpq.worker")


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
        self._stdin.write(encode_frame(message))
        await self._stdin.drain()

    async def receive(self) -> dict[str, Any]:
        return await receive_frame(self._stdout)

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
                status=Status.FAILURE,
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
                status=Status.CRASHED,
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
