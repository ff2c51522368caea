"""The history index alone (no broker): states, order, resume offset, retention, links."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amqpq.dashboard.index import HistoryIndex, TaskQuery


def at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def event(kind: str, task_id: str, when: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "id": task_id, "task": "t.add", "timestamp": at(when), **fields}


def test_a_later_event_sets_the_state_an_earlier_one_only_fills_in(tmp_path: Path) -> None:
    index = HistoryIndex(tmp_path / "h.db")
    now = time.time()
    # The worker's batch with the outcome arrives before the one with the start
    index.ingest([event("task.succeeded", "a", now + 2, result="3", runtime=0.5)], 1)
    index.ingest(
        [
            event("task.received", "a", now, args=[1, 2], kwargs={}, queue="q", chord_id="c1"),
            event("task.started", "a", now + 1),
        ],
        2,
    )
    task = index.task("a")
    assert task is not None
    assert task["state"] == "SUCCESS"
    assert task["args"] == [1, 2]
    assert task["result"] == "3"
    assert task["queue"] == "q"
    assert task["chord_id"] == "c1"  # an envelope field without a column of its own
    assert [e["type"] for e in task["timeline"]] == [
        "task.received",
        "task.started",
        "task.succeeded",
    ]
    assert index.offset() == 2
    index.close()
    # A new index on the same file resumes after the offset
    assert HistoryIndex(tmp_path / "h.db").offset() == 2


def test_retention_prunes_old_rows_and_a_retry_links_both_ways(tmp_path: Path) -> None:
    index = HistoryIndex(tmp_path / "h.db", retention=3600)
    now = time.time()
    index.ingest([event("task.failed", "old", now - 7200, error="E")], 1)
    index.ingest([event("task.failed", "new", now - 10, error="E", message="boom")], 2)
    index.prune(now - 3600)
    assert index.task("old") is None
    index.link_retry("new", "again", "t.add", [1], {}, now)
    assert index.task("again")["retry_of"] == "new"  # type: ignore[index]
    assert index.task("new")["retried_as"] == ["again"]  # type: ignore[index]
    tasks, total = index.tasks(TaskQuery(state="FAILURE"))
    assert [t["id"] for t in tasks] == ["new"]
    assert total == 1
    assert index.tasks(TaskQuery(text="boom"))[1] == 1
    assert index.tasks(TaskQuery(since=now - 60))[1] == 2


def test_workers_are_online_until_offline_or_silent(tmp_path: Path) -> None:
    index = HistoryIndex(tmp_path / "h.db")
    now = time.time()
    index.ingest(
        [
            {"type": "worker.online", "worker": "a:1", "timestamp": at(now), "pool": "threads"},
            {"type": "worker.online", "worker": "b:2", "timestamp": at(now - 600)},
            {"type": "worker.online", "worker": "c:3", "timestamp": at(now)},
            {"type": "worker.offline", "worker": "c:3", "timestamp": at(now)},
        ],
        None,
    )
    online = {w["name"]: w["online"] for w in index.workers()}
    assert online == {"a:1": True, "b:2": False, "c:3": False}
    assert index.workers()[0]["pool"] == "threads"
