"""The hand-off between the event loop and the task threads of a local pool.

:class:`SlotThreads` is a fixed set of threads fed by one queue; outcomes come
back to the loop either straight to a loop thread still waiting for them
(:class:`_Handoff`) or through the loop, several per wake-up (:class:`_Completions`).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

from amqpq.worker.execution import Outcome

__all__ = ["SlotThreads"]


class SlotThreads:
    """A fixed set of threads fed by one queue: the cheapest hop off the event loop.

    No concurrent Future to chain per task, unlike ``run_in_executor``, which matters
    when a single slot drains tiny tasks. Daemon threads: a task stuck
    past the grace period must not keep the process alive.

    :meth:`run` may first wait for the result *on the loop's thread*, for at most
    ``INLINE_WAIT`` seconds, when nothing else can run (a one-slot worker): a tiny task
    then comes back with one thread wake-up instead of a trip through the loop's
    self-pipe, ``select`` and a scheduled callback. The loop is held for at most that long, far below any heartbeat; a
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

    Each ``call_soon_threadsafe`` writes a byte to the loop's self-pipe and wakes it,
    a large cost of a busy multi-slot worker's loop; a completion that finds others already waiting rides on their wake-up.
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
