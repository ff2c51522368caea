"""Reads the events stream into the history index and tells live pages what changed.

The reader starts after the last offset the index holds (from the first retained
record on a new index), collects records for a moment and indexes them in one
transaction in a thread (with the offset of the last one), so ingest keeps up with
many workers without blocking the web server's loop. Records at or below the
indexed offset are skipped: a reconnect that reads again from an older offset adds
nothing twice. A batch the index could not write because its connection was lost
(a database away for a moment) is kept and tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from amqpq.codec import MessageProperties
from amqpq.dashboard.index import HistoryError, HistoryIndex
from amqpq.events import decode_record
from amqpq.settings import Settings
from amqpq.topology.infra import events_stream_name
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.broadcast import StreamReader

__all__ = ["Hub", "Ingest"]

log = logging.getLogger("amqpq.dashboard")

_BATCH_SECONDS = 0.2
_BATCH_EVENTS = 5000
_RETRY_SECONDS = 2.0
# Records read ahead of the index (a worker's record holds up to 500 events): with the
# events kept for the next transaction, what a dashboard catching up holds in memory.
_PREFETCH = 20


class Hub:
    """Live updates for server-sent events: each subscriber gets every notice (bounded)."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(100)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, notice: dict[str, Any]) -> None:
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):  # a slow page misses a refresh
                queue.put_nowait(notice)


class Ingest:
    """The stream reader of one dashboard."""

    def __init__(self, settings: Settings, prefix: str, index: HistoryIndex, hub: Hub) -> None:
        self._settings = settings
        self._stream = events_stream_name(prefix)
        self._index = index
        self._hub = hub
        self._broker: AsyncBroker | None = None
        self._reader: StreamReader | None = None
        self._pending: list[dict[str, Any]] = []
        self._pending_offset: int | None = None
        self._indexed = index.offset()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self.indexed_events = 0
        self.error: str | None = None

    async def start(self) -> None:
        self._broker = AsyncBroker(self._settings, "dashboard")
        offset: str | int = "first" if self._indexed is None else self._indexed + 1
        self._reader = StreamReader(
            self._broker,
            self._stream,
            on_record=self._on_record,
            offset=offset,
            prefetch=_PREFETCH,
        )
        await self._reader.start()
        self._task = asyncio.ensure_future(self._write_loop())

    async def _on_record(
        self, body: bytes, properties: MessageProperties, offset: int | None
    ) -> None:
        if offset is not None and self._indexed is not None and offset <= self._indexed:
            return
        self._pending.extend(decode_record(body))
        if offset is not None:
            self._pending_offset = offset
            self._indexed = offset
        if len(self._pending) >= _BATCH_EVENTS:
            self._wake.set()
            self._room.clear()
            await self._room.wait()  # the ack waits: the broker stops sending

    async def _write_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _BATCH_SECONDS)
            self._wake.clear()
            await self.flush()
            if self.error is not None:
                await asyncio.sleep(_RETRY_SECONDS)

    async def flush(self) -> None:
        if not self._pending and self._pending_offset is None:
            self._room.set()
            return
        events, self._pending = self._pending, []
        self._room.set()
        offset, self._pending_offset = self._pending_offset, None
        try:
            count = await asyncio.to_thread(self._index.ingest, events, offset)
        except Exception as exc:  # a full disk, a database down: say so on /healthz, go on
            error = f"indexing events failed: {exc}"
            if error != self.error:
                log.exception("indexing %d events failed", len(events))
            self.error = error
            if isinstance(exc, HistoryError) and exc.transient:
                # Kept for the next try (the reader waits meanwhile): nothing is lost
                # while the database is away for a moment.
                self._pending = events + self._pending
                if self._pending_offset is None:
                    self._pending_offset = offset
            return
        self.error = None
        self.indexed_events += count
        if count:
            ids = sorted({str(e["id"]) for e in events if "id" in e})[:200]
            workers = any(str(e.get("type", "")).startswith("worker.") for e in events)
            self._hub.publish({"events": count, "tasks": ids, "workers": workers})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._reader is not None:
            await self._reader.close()
        with contextlib.suppress(Exception):
            await self.flush()
        if self._broker is not None:
            await self._broker.close()
