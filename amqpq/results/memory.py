"""A result store in memory, for ``amqpq.testing`` (one process, thread-safe)."""

from __future__ import annotations

import asyncio
import threading
import time

from amqpq.envelope import Reply
from amqpq.results.base import (
    DEFAULT_MAX_BYTES,
    StoredResult,
    decode_stored,
    is_final,
    stored_text,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    """Task id -> (stored JSON, expiry on the monotonic clock). Values go through the
    same JSON encoding as the real stores, so a test sees what a store would return."""

    url = "memory://"

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: dict[str, tuple[str, float]] = {}
        self._changed = threading.Condition(threading.Lock())

    def save(self, reply: Reply, expires: float) -> None:
        text = stored_text(reply, self.max_bytes)
        with self._changed:
            self._items[reply.id] = (text, time.monotonic() + expires)
            self._changed.notify_all()

    def load(self, task_id: str) -> StoredResult | None:
        with self._changed:
            return self._load_locked(task_id)

    def _load_locked(self, task_id: str) -> StoredResult | None:
        item = self._items.get(task_id)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self._items[task_id]
            return None
        return decode_stored(item[0])

    def forget(self, task_id: str) -> None:
        with self._changed:
            self._items.pop(task_id, None)

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                stored = self._load_locked(task_id)
                if is_final(stored):
                    return stored
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return stored
                self._changed.wait(left)

    def close(self) -> None:
        return None

    async def asave(self, reply: Reply, expires: float) -> None:
        self.save(reply, expires)

    async def aload(self, task_id: str) -> StoredResult | None:
        return self.load(task_id)

    async def aforget(self, task_id: str) -> None:
        self.forget(task_id)

    async def await_final(self, task_id: str, timeout: float | None) -> StoredResult | None:
        return await asyncio.to_thread(self.wait, task_id, timeout)

    async def aclose(self) -> None:
        return None
