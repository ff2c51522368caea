"""Writes of one event loop that arrive together go to the store together.

A worker runs many tasks at once, and each final state must be stored before its
message is acked. Written one by one, PostgreSQL commits (and syncs its log) once
per task and Redis answers once per task. A :class:`WriteBatcher` sends whatever
piled up while the previous batch was in flight as one batch: one transaction, one
pipeline. Nothing waits for a timer: a lone write goes out at once, and a batch
grows only as long as the store is busy with the one before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["LoopBatchers", "WriteBatcher"]

Item = TypeVar("Item")

MAX_BATCH = 500
"""Writes per batch at most (a transaction or pipeline stays small)."""


class WriteBatcher(Generic[Item]):
    """Coalesces :meth:`write` calls of one event loop into calls of ``flush(items)``.

    Each caller's write completes when its batch is stored, or raises the batch's error
    (every caller of a failed batch sees it and may retry on its own).
    """

    def __init__(self, flush: Callable[[list[Item]], Awaitable[None]]) -> None:
        self._flush = flush
        self._pending: list[tuple[Item, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, item: Item) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self._flush([item for item, _ in batch])
            except BaseException as exc:  # every writer of this batch gets the error
                if isinstance(exc, asyncio.CancelledError):  # the loop is going: all of them
                    batch, self._pending = batch + self._pending, []
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


class LoopBatchers(Generic[Item]):
    """One :class:`WriteBatcher` per event loop (a store may serve several loops)."""

    def __init__(self, flush: Callable[[list[Item]], Awaitable[None]]) -> None:
        self._flush = flush
        self._batchers: dict[asyncio.AbstractEventLoop, WriteBatcher[Item]] = {}

    async def write(self, item: Item) -> None:
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            for stale in [lp for lp in self._batchers if lp.is_closed()]:
                del self._batchers[stale]
            batcher = self._batchers[loop] = WriteBatcher(self._flush)
        await batcher.write(item)
