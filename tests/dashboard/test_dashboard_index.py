"""The history index alone (no broker), in SQLite and in PostgreSQL: states, order,
resume offset, retention, links, and several dashboards writing into one database."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from amqpq.dashboard.history import open_history
from amqpq.dashboard.index import HistoryIndex, TaskQuery
from tests.support.stores import postgres_history_url

OpenIndex = Callable[..., HistoryIndex]


@pytest.fixture(params=["sqlite", "postgres"])
def open_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenIndex]:
    """Factory: an index on the test's one location (a file, or a table prefix of its own
    in PostgreSQL); each call opens it again, as a restarted or another dashboard does."""
    opened: list[HistoryIndex] = []

    def make(location: str) -> OpenIndex:
        def open_one(retention: float = 7 * 86400.0) -> HistoryIndex:
            index = open_history(location, retention=retention)
            opened.append(index)
            return index

        return open_one

    try:
        if request.param == "sqlite":
            yield make(str(tmp_path / "h.db"))
        else:
            with postgres_history_url() as url:
                try:
                    yield make(url)
                finally:  # before the tables are dropped
                    for index in opened:
                        index.close()
    finally:
        for index in opened:
            index.close()


def at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def event(kind: str, task_id: str, when: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "id": task_id, "task": "t.add", "timestamp": at(when), **fields}


def test_a_later_event_sets_the_state_an_earlier_one_only_fills_in(open_index: OpenIndex) -> None:
    index = open_index()
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
    assert open_index().offset() == 2


def test_retention_prunes_old_rows_and_a_retry_links_both_ways(open_index: OpenIndex) -> None:
    index = open_index(retention=3600)
    now = time.time()
    index.ingest([event("task.failed", "old", now - 7200, error="E")], 1)
    index.ingest([event("task.failed", "new", now - 10, error="E", message="Boom")], 2)
    index.prune(now - 3600)
    assert index.task("old") is None
    index.link_retry("new", "again", "t.add", [1], {}, now)
    assert index.task("again")["retry_of"] == "new"  # type: ignore[index]
    assert index.task("new")["retried_as"] == ["again"]  # type: ignore[index]
    tasks, total = index.tasks(TaskQuery(state="FAILURE"))
    assert [t["id"] for t in tasks] == ["new"]
    assert total == 1
    assert index.tasks(TaskQuery(text="boom"))[1] == 1  # the case of letters does not matter
    assert index.tasks(TaskQuery(since=now - 60))[1] == 2


def test_filters_pages_workflows_and_throughput(open_index: OpenIndex) -> None:
    index = open_index()
    now = time.time()
    events = [
        event("task.received", "root", now - 30, worker="w:1", args=[0]),
        event("task.succeeded", "root", now - 29, worker="w:1", runtime=0.1),
    ]
    for n in range(5):
        child = f"child{n}"
        events += [
            event(
                "task.received",
                child,
                now - 20 + n,
                worker="w:2",
                args=[n],
                parent_id="root",
                root_id="root",
            ),
            event(
                "task.failed" if n % 2 else "task.succeeded",
                child,
                now - 19 + n,
                worker="w:2",
                error="ValueError",
                message=f"bad {n}",
                runtime=0.2,
            ),
        ]
    index.ingest(events, 7)
    page, total = index.tasks(TaskQuery(worker="w:2", limit=2, offset=1))
    assert total == 5
    assert [t["id"] for t in page] == ["child3", "child2"]  # newest first
    assert index.tasks(TaskQuery(state="failure", name="t.add"))[1] == 2
    root = index.task("root")
    assert root is not None
    assert [c["id"] for c in root["children"]] == [f"child{n}" for n in range(5)]
    assert sorted(t["id"] for t in root["workflow"]) == [f"child{n}" for n in range(5)] + ["root"]
    minutes = index.throughput(60)
    assert sum(m["received"] for m in minutes) == 6
    assert sum(m["succeeded"] for m in minutes) == 4
    assert sum(m["failed"] for m in minutes) == 2
    assert index.counts() == {"t.add": {"SUCCESS": 4, "FAILURE": 2}}
    assert len(index.runtimes()) == 6
    assert index.last_run("t.add") == pytest.approx(now - 16, abs=0.01)


def test_two_dashboards_on_one_database_count_each_event_once(open_index: OpenIndex) -> None:
    # Given two dashboards sharing one history, each reading the same stream
    first, second = open_index(), open_index()
    now = time.time()
    batch_1 = [
        event("task.received", "a", now - 5, worker="w:1"),
        event("task.succeeded", "a", now - 4, worker="w:1", result="1"),
        {"type": "worker.online", "worker": "w:1", "timestamp": at(now - 5), "pool": "threads"},
    ]
    batch_2 = [
        event("task.received", "b", now - 3, worker="w:1"),
        event("task.failed", "b", now - 2, worker="w:1", error="E"),
        {"type": "worker.offline", "worker": "w:1", "timestamp": at(now - 1)},
    ]
    # When one indexes both batches and the other, lagging, indexes them again
    first.ingest(batch_1, 10)
    first.ingest(batch_2, 20)
    second.ingest(batch_1, 10)
    # Then nothing is counted twice, a lagging one does not undo later events,
    assert first.tasks(TaskQuery())[1] == 2
    assert len(second.task("a")["timeline"]) == 2  # type: ignore[index]
    minutes = second.throughput(10)
    assert sum(m["received"] for m in minutes) == 2
    assert sum(m["succeeded"] for m in minutes) == 1
    assert sum(m["failed"] for m in minutes) == 1
    assert [w["online"] for w in second.workers()] == [False]
    assert second.workers()[0]["pool"] == "threads"
    # and the stored offset only moves forward
    assert second.offset() == 20
    second.ingest(batch_2, 20)
    assert first.offset() == 20
    assert sum(m["failed"] for m in first.throughput(10)) == 1


def test_two_dashboards_writing_at_once_neither_fail_nor_count_twice(
    open_index: OpenIndex,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Given two dashboards indexing the same records at the same time, in their own batches
    first, second = open_index(), open_index()
    now = time.time()
    records = [
        [
            event("task.received", f"t{n}", now - 50 + n / 10, worker="w:1"),
            event("task.succeeded", f"t{n}", now - 50 + n / 10 + 0.05, worker="w:1"),
        ]
        for n in range(200)
    ]

    def read(index: HistoryIndex, per_batch: int) -> None:
        for start in range(0, len(records), per_batch):
            chunk = records[start : start + per_batch]
            index.ingest([e for record in chunk for e in record], start + len(chunk))

    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(read, first, 7), pool.submit(read, second, 11)]
        for future in done:
            future.result()
    # Then every task is there once, counted once, and the offset is the last record's
    assert first.tasks(TaskQuery(state="SUCCESS"))[1] == 200
    minutes = second.throughput(10)
    assert sum(m["received"] for m in minutes) == 200
    assert sum(m["succeeded"] for m in minutes) == 200
    assert all(len(first.task(f"t{n}")["timeline"]) == 2 for n in (0, 99, 199))  # type: ignore[index]
    assert first.offset() == 200


def test_text_with_nul_characters_is_indexed(open_index: OpenIndex) -> None:
    index = open_index()
    index.ingest([event("task.failed", "n", time.time(), error="E", message="a\x00b")], 1)
    task = index.task("n")
    assert task is not None
    assert task["message"] in ("a\x00b", "a\ufffdb")  # PostgreSQL's text cannot hold NUL
    assert index.offset() == 1


def test_workers_are_online_until_offline_or_silent(open_index: OpenIndex) -> None:
    index = open_index()
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
    assert index.offset() is None


def test_a_postgresql_history_reconnects_after_its_connections_are_lost() -> None:
    import psycopg

    from amqpq.dashboard.index import HistoryError
    from tests.support.stores import POSTGRES_URL

    with postgres_history_url() as url:
        index = open_history(url)
        try:
            now = time.time()
            index.ingest([event("task.received", "a", now)], 1)
            assert index.task("a") is not None
            # When the server ends every connection of this history (a restart, a failover)
            prefix = url.rpartition("table_prefix=")[2]
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (f"amqpq dashboard {prefix}",),
                )
            # Then the batch in flight fails with one line naming the history,
            with pytest.raises(HistoryError, match="history postgresql://") as failed:
                index.ingest([event("task.started", "a", now + 1)], 2)
            assert failed.value.transient  # the dashboard keeps the batch and tries again
            # and the next tries work on new connections
            index.ingest([event("task.started", "a", now + 1)], 2)
            assert index.task("a")["state"] == "STARTED"  # type: ignore[index]
            assert index.offset() == 2
        finally:
            index.close()
