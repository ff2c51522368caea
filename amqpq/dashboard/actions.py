"""What the dashboard asks of the broker: queue figures, dead letters, revoke, retry, schedules.

Each function is the same operation as its command (``amqpq status``, ``amqpq dlq``,
``amqpq revoke``, ``amqpq send``), reused here rather than written again; the
blocking ones run in a thread (the web server's loop never waits on the broker).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from amqpq import dlq as deadletters
from amqpq.cli.status import collect_status
from amqpq.control import broadcast
from amqpq.errors import AmqpqError
from amqpq.revocations import revocation_message
from amqpq.settings import Settings
from amqpq.topology.models import Topology
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.queues import QueueSession

__all__ = [
    "BrokerView",
    "dead_letters",
    "purge_dead_letters",
    "replay_dead_letters",
    "revoke",
]


class BrokerView:
    """Queue and process figures from the management API, kept for ``ttl`` seconds."""

    def __init__(self, settings: Settings, topology: Topology, ttl: float = 2.0) -> None:
        self._settings = settings
        self._topology = topology
        self._ttl = ttl
        self._cached: tuple[float, dict[str, Any]] | None = None

    def status(self) -> dict[str, Any]:
        """``amqpq status --json``'s document (queues, delayed, workers' connections, beats)."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self._ttl:
            return self._cached[1]
        document = collect_status(self._settings, self._topology)
        self._cached = (now, document)
        return document

    def schedules(self, last_run: Any) -> list[dict[str, Any]]:
        """Each schedule with its next run (as the beat computes it), last run and leader."""
        document = self.status()
        leader = next((b["name"] for b in document["beats"] if b["role"] == "leader"), None)
        next_runs = {n["schedule"]: n for n in document["next_runs"]}
        rows = []
        for name, schedule in self._topology.schedules.items():
            last = last_run(schedule.task)
            rows.append(
                {
                    "name": name,
                    "task": schedule.task,
                    "schedule": schedule.model_dump(mode="json", exclude_none=True),
                    "next_run": next_runs.get(name, {}).get("next_run"),
                    "last_run": datetime.fromtimestamp(last, UTC).isoformat(timespec="seconds")
                    if last
                    else None,
                    "leader": leader,
                }
            )
        return rows


def _dlq(topology: Topology, queue: str) -> deadletters.DeadLetterQueue:
    return deadletters.resolve(topology, queue)


def dead_letters(
    settings: Settings, topology: Topology, queue: str, limit: int = 50
) -> dict[str, Any]:
    """``amqpq dlq show QUEUE``: the count and the first ``limit`` letters (not consumed)."""
    dlq = _dlq(topology, queue)
    with QueueSession(settings, "dashboard dlq") as session:
        if not session.exists(dlq.name):
            return {"queue": queue, "dlq": dlq.name, "exists": False, "count": 0, "letters": []}
        count = session.count(dlq.name).messages
        letters = deadletters.peek(session, dlq, limit) if count else []
    return {
        "queue": queue,
        "dlq": dlq.name,
        "exists": True,
        "count": count,
        "letters": [letter.as_json() for letter in letters],
    }


def replay_dead_letters(
    settings: Settings, topology: Topology, queue: str, task_id: str | None = None
) -> dict[str, Any]:
    """``amqpq dlq replay QUEUE [--id ID]``."""
    dlq = _dlq(topology, queue)
    with QueueSession(settings, "dashboard dlq") as session:
        result = deadletters.replay(
            session, dlq, prefix=topology.infrastructure.prefix, task_id=task_id
        )
    return {
        "replayed": result.replayed,
        "skipped": result.skipped,
        "failed": [str(f.error) for f in result.failures],
    }


def purge_dead_letters(settings: Settings, topology: Topology, queue: str) -> dict[str, Any]:
    """``amqpq dlq purge QUEUE``."""
    dlq = _dlq(topology, queue)
    with QueueSession(settings, "dashboard dlq") as session:
        return {"purged": deadletters.purge(session, dlq)}


async def revoke(
    settings: Settings, prefix: str, task_id: str, terminate: bool, by: str
) -> dict[str, Any]:
    """``amqpq revoke ID [--terminate]``: the stream record, then the live workers' answers."""
    broker = AsyncBroker(settings, "dashboard revoke")
    try:
        await broker.connect()
        await broker.publish(
            revocation_message([task_id], terminate=terminate, prefix=prefix, by=by)
        )
    finally:
        await broker.close()
    try:
        replies = await broadcast(
            settings, "revoke", {"ids": [task_id], "terminate": terminate}, prefix=prefix
        )
    except AmqpqError:
        replies = []
    return {
        "revoked": task_id,
        "terminate": terminate,
        "workers": [{"worker": r.worker, **r.data} for r in replies if r.ok],
    }
