"""Task and worker events, kept on the broker in the stream ``amqpq.events``.

One event is one JSON object:

```json
{"type": "task.succeeded", "timestamp": "2026-11-22T03:09:34.120+00:00",
 "worker": "web-1:4242", "task": "tasks.add", "id": "5f0c...", "queue": "default",
 "runtime": 0.0012, "result": "3"}
```

Types: ``task.<state>`` (sent, received, started, succeeded, failed, retried,
rejected, revoked) and ``worker.<state>`` (online, heartbeat, offline).

A worker batches its events: :meth:`EventPublisher.emit` appends a dict to a
list and returns; a background task publishes the list as one stream record
(``{"worker": ..., "events": [...]}``) when it reaches :data:`BATCH_SIZE` events or every
:data:`FLUSH_SECONDS`, without publisher confirms. One record per batch instead
of one message per event is what makes events cheap enough to be on by default.
When the broker is slow or gone, events beyond :data:`MAX_PENDING` are dropped
and counted: an event never blocks or fails a task.

Senders (``AMQPQ_EVENTS=1``) publish ``task.sent`` one message at a time to the
topic exchange ``amqpq.events`` (routing key ``task.sent.<task name>``); the
stream is bound to that exchange, so a stream record is either a worker's batch
or one sender's event: :func:`decode_record` reads both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import reprlib
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from time import time
from typing import TYPE_CHECKING, Any

from amqpq.codec import CONTENT_TYPE, MessageProperties, OutgoingMessage
from amqpq.errors import AmqpqError
from amqpq.topology.infra import events_exchange_name, events_stream_name

if TYPE_CHECKING:
    from amqpq.transport.aio import AsyncBroker

__all__ = [
    "BATCH_SIZE",
    "FLUSH_SECONDS",
    "MAX_PENDING",
    "TASK_STATES",
    "WORKER_STATES",
    "EventPublisher",
    "bounded_repr",
    "decode_record",
    "event_message",
    "events_enabled_by_default",
    "routing_key_for",
    "worker_events_by_default",
]

log = logging.getLogger("amqpq.events")

TASK_STATES = (
    "sent",
    "received",
    "started",
    "succeeded",
    "failed",
    "retried",
    "rejected",
    "revoked",
)
WORKER_STATES = ("online", "heartbeat", "offline")
MAX_PENDING = 50_000
"""Events a worker keeps while the broker does not take them; newer ones are dropped."""
BATCH_SIZE = 500
"""Events per stream record at most (a full batch is published at once)."""
FLUSH_SECONDS = 0.25
"""A partial batch waits at most this long: a dashboard sees a task within a second."""
BATCH_TYPE = "amqpq.events.batch"
BATCH_ENCODING = "deflate"  # zlib's format (RFC 1950), as HTTP's "deflate"
_REPR_LIMIT = 1000

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 20
_repr.maxlevel = 4


def bounded_repr(value: Any, limit: int = _REPR_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters, without building a huge string first."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float:
        return repr(value)  # the common results, without reprlib's dispatch
    try:
        text = _repr.repr(value)
    except Exception:  # a user's __repr__ that raises: an event is never worth a task
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _flag(name: str) -> str:
    return os.environ.get(name, "").strip().lower()


def events_enabled_by_default() -> bool:
    """Senders' ``task.sent`` events: ``AMQPQ_EVENTS=1`` turns them on (default: off)."""
    return _flag("AMQPQ_EVENTS") in ("1", "true", "yes", "on")


def worker_events_by_default() -> bool:
    """Workers publish events unless ``AMQPQ_EVENTS=0`` (or ``--without-events``)."""
    return _flag("AMQPQ_EVENTS") not in ("0", "false", "no", "off")


def routing_key_for(kind: str, task: str | None = None) -> str:
    """``task.succeeded.tasks.add`` or ``worker.online``."""
    return f"{kind}.{task}" if task else kind


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def decode_record(body: bytes) -> list[dict[str, Any]]:
    """The events of one stream record: a worker's batch or a sender's event.

    A batch is ``{"worker": name, "events": [...]}`` with ``ts`` (milliseconds since the
    epoch) in each event; the events come back as :func:`event_message` writes them,
    with ``worker`` and an ISO ``timestamp``.
    """
    try:
        if body[:1] == b"x":  # zlib's header: a worker's batch (JSON starts with "{")
            body = zlib.decompress(body)
        decoded = json.loads(body)
    except (ValueError, zlib.error):
        return []
    if not isinstance(decoded, dict):
        return []
    batch = decoded.get("events")
    if not isinstance(batch, list):
        return [decoded]  # one event from a sender
    worker = decoded.get("worker")
    events: list[dict[str, Any]] = []
    for event in batch:
        if not isinstance(event, dict):
            continue
        received_at = event.pop("received_ts", None)
        if received_at is not None:  # received and started, written as one (task_event)
            received = {**event, "type": "task.received", "ts": received_at}
            events.append(_finished(received, worker))
            event = {k: event[k] for k in _STARTED_FIELDS if k in event}
        events.append(_finished(event, worker))
    return events


_STARTED_FIELDS = ("type", "task", "id", "ts", "queue", "shadow")


def _finished(event: dict[str, Any], worker: Any) -> dict[str, Any]:
    stamp = event.pop("ts", None)
    if isinstance(stamp, int | float):
        event["timestamp"] = _stamp(stamp / 1000)
    event["worker"] = worker
    return {k: v for k, v in event.items() if v is not None}


def event_message(
    kind: str, *, prefix: str = "amqpq", task: str | None = None, **fields: Any
) -> OutgoingMessage:
    """An event as a message for the events exchange (transient, not mandatory)."""
    body: dict[str, Any] = {
        "type": kind,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    if task is not None:
        body["task"] = task
    body.update((k, v) for k, v in fields.items() if v is not None)
    return OutgoingMessage(
        body=json.dumps(body, separators=(",", ":"), default=_json_default).encode(),
        properties=MessageProperties(content_type=CONTENT_TYPE, delivery_mode=1, type=kind),
        exchange=events_exchange_name(prefix),
        routing_key=routing_key_for(kind, task),
        mandatory=False,
    )


class EventPublisher:
    """A worker's events: batched in memory, published as stream records by one task."""

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        prefix: str,
        worker_name: str,
        heartbeat: float = 10.0,
        heartbeat_fields: Callable[[], Mapping[str, Any]] | None = None,
        max_pending: int = MAX_PENDING,
        batch_size: int = BATCH_SIZE,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        # aio-pika only where events are published by a worker: the producers import this
        # module for event_message(), and importing them loads no AMQP client library.
        from amqpq.transport.broadcast import FireAndForget

        self._stream = events_stream_name(prefix)
        self._worker = worker_name
        self._publisher = FireAndForget(broker)
        self._pending: list[dict[str, Any]] = []
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._full = asyncio.Event()
        self._heartbeat = heartbeat
        self._heartbeat_fields = heartbeat_fields
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.dropped = 0

    def _add(self, event: dict[str, Any]) -> None:
        pending = self._pending
        if len(pending) >= self._max_pending:
            self.dropped += 1
            return
        pending.append(event)
        if len(pending) == self._batch_size:
            self._full.set()

    def emit(self, kind: str, task: str | None = None, **fields: Any) -> None:
        """Keep one event for the next batch; never blocks, never raises."""
        fields["type"] = kind
        if task is not None:
            fields["task"] = task
        fields["ts"] = int(time() * 1000)
        self._add(fields)

    # The worker's observer interface (see amqpq.worker.consumer.TaskObserver).
    def task_event(self, state: str, task: str, task_id: str, fields: Mapping[str, Any]) -> None:
        # Three calls per task on the worker's loop: written out, no helper calls.
        pending = self._pending
        if state == "started" and pending:
            last = pending[-1]
            if last.get("id") == task_id and last["type"] == "task.received":
                # Started right after it was received (a free slot, the common case): one
                # event says both, decode_record() gives them back as two.
                last["type"] = "task.started"
                last["received_ts"] = last["ts"]
                last["ts"] = int(time() * 1000)
                return
        if len(pending) >= self._max_pending:
            self.dropped += 1
            return
        pending.append(
            {
                "type": "task." + state,
                "task": task,
                "id": task_id,
                "ts": int(time() * 1000),
                **fields,
            }
        )
        if len(pending) == self._batch_size:
            self._full.set()

    async def start(self, **online: Any) -> None:
        self._tasks.append(asyncio.ensure_future(self._flush_loop()))
        if self._heartbeat > 0:
            self._tasks.append(asyncio.ensure_future(self._beat()))
        self.emit("worker.online", **online)

    def _encode(self, batch: list[dict[str, Any]]) -> bytes:
        # The worker once per batch, times as numbers: the encoding stays in C. Compressed:
        # a batch's events repeat their keys and names, and the broker writes a tenth of
        # the bytes (what it costs the broker, and what the retention holds).
        record = {"worker": self._worker, "events": batch}
        text = json.dumps(record, separators=(",", ":"), default=_json_default).encode()
        return zlib.compress(text, 1)

    def _record(self, body: bytes) -> OutgoingMessage:
        return OutgoingMessage(
            body=body,
            properties=MessageProperties(
                content_type=CONTENT_TYPE,
                content_encoding=BATCH_ENCODING,
                delivery_mode=2,
                type=BATCH_TYPE,
            ),
            exchange="",
            routing_key=self._stream,
            mandatory=False,
        )

    async def flush(self) -> None:
        """Publish every kept event now (in batches of at most ``batch_size``)."""
        while self._pending:
            size = self._batch_size
            batch, self._pending = self._pending[:size], self._pending[size:]
            try:
                body = self._encode(batch)
            except Exception:  # an unserialisable field: an event is never worth a task
                self.dropped += len(batch)
                log.debug("events not encoded", exc_info=True)
                continue
            try:
                await self._publisher.publish(self._record(body))
                self.published += len(batch)
            except Exception as exc:
                if not isinstance(exc, AmqpqError):  # a bug must not stop the events for good
                    log.warning("publishing events failed: %r", exc)
                # Disconnected: keep what is pending (up to max_pending) for the next try.
                self.dropped += len(batch)
                return

    async def _flush_loop(self) -> None:
        full = self._full
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(full.wait(), self._flush_seconds)
            full.clear()
            await self.flush()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            fields = dict(self._heartbeat_fields()) if self._heartbeat_fields else {}
            self.emit("worker.heartbeat", **fields)

    async def close(self, **offline: Any) -> None:
        """Send ``worker.offline`` and what is kept (up to a second), then stop."""
        self.emit("worker.offline", **offline)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), 1.0)
        await self._publisher.close()
