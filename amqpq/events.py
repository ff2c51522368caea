"""Task and worker events on the topic exchange ``amqpq.events``.

Routing keys: ``task.<state>.<task name>`` (state: sent, received, started,
succeeded, failed, retried, rejected, revoked) and ``worker.<state>`` (online,
heartbeat, offline). The body is one JSON object:

```json
{"type": "task.succeeded", "timestamp": "2026-11-22T03:09:34.120+00:00",
 "worker": "web-1:4242", "task": "tasks.add", "id": "5f0c...", "queue": "default",
 "runtime": 0.0012}
```

Events never block or fail a task: :meth:`EventPublisher.emit` puts the event
in a bounded in-memory queue and returns; a background task publishes without
publisher confirms, without ``mandatory`` and as transient messages. When the
queue is full (the broker is slow or gone) new events are dropped and counted.
With no ``amqpq events`` (or other consumer) bound, RabbitMQ discards them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from amqpq.codec import CONTENT_TYPE, MessageProperties, OutgoingMessage
from amqpq.errors import AmqpqError
from amqpq.topology.infra import events_exchange_name

if TYPE_CHECKING:
    from amqpq.transport.aio import AsyncBroker

__all__ = [
    "TASK_STATES",
    "WORKER_STATES",
    "EventPublisher",
    "event_message",
    "events_enabled_by_default",
    "routing_key_for",
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
_MAX_PENDING = 10_000


def events_enabled_by_default() -> bool:
    """``AMQPQ_EVENTS=1`` turns events on where no flag says otherwise (default: off)."""
    return os.environ.get("AMQPQ_EVENTS", "").strip().lower() in ("1", "true", "yes", "on")


def routing_key_for(kind: str, task: str | None = None) -> str:
    """``task.succeeded.tasks.add`` or ``worker.online``."""
    return f"{kind}.{task}" if task else kind


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


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
    """A worker's events: bounded, fire-and-forget, published by one background task."""

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        prefix: str,
        worker_name: str,
        heartbeat: float = 10.0,
        heartbeat_fields: Callable[[], Mapping[str, Any]] | None = None,
        max_pending: int = _MAX_PENDING,
    ) -> None:
        # aio-pika only where events are published by a worker: the producers import this
        # module for event_message(), and importing them loads no AMQP client library.
        from amqpq.transport.broadcast import FireAndForget

        self._prefix = prefix
        self._worker = worker_name
        self._publisher = FireAndForget(broker)
        self._queue: asyncio.Queue[OutgoingMessage] = asyncio.Queue(max_pending)
        self._heartbeat = heartbeat
        self._heartbeat_fields = heartbeat_fields
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.dropped = 0

    def emit(self, kind: str, task: str | None = None, **fields: Any) -> None:
        """Queue one event; never blocks, never raises."""
        try:
            message = event_message(
                kind, prefix=self._prefix, task=task, worker=self._worker, **fields
            )
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
        except Exception:  # an unserialisable field: an event is never worth a task
            self.dropped += 1
            log.debug("event %s not encoded", kind, exc_info=True)

    # The worker's observer interface (see amqpq.worker.consumer.TaskObserver).
    def task_event(self, state: str, task: str, task_id: str, fields: Mapping[str, Any]) -> None:
        self.emit(f"task.{state}", task, id=task_id, **fields)

    async def start(self, **online: Any) -> None:
        self._tasks.append(asyncio.ensure_future(self._drain()))
        if self._heartbeat > 0:
            self._tasks.append(asyncio.ensure_future(self._beat()))
        self.emit("worker.online", **online)

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            message = await queue.get()
            try:
                await self._publisher.publish(message)
                self.published += 1
            except Exception as exc:
                if not isinstance(exc, AmqpqError):  # a bug must not stop the events for good
                    log.warning("publishing an event failed: %r", exc)
                # Disconnected: drop what is queued now rather than replay stale events.
                self.dropped += 1 + queue.qsize()
                while not queue.empty():
                    queue.get_nowait()
                    queue.task_done()
                await asyncio.sleep(0.5)
            finally:
                queue.task_done()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            fields = dict(self._heartbeat_fields()) if self._heartbeat_fields else {}
            self.emit("worker.heartbeat", **fields)

    async def close(self, **offline: Any) -> None:
        """Send ``worker.offline`` and what is queued (up to a second), then stop."""
        self.emit("worker.offline", **offline)
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), 1.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._publisher.close()
