"""The dashboard's history: an SQLite index built from the events stream.

One row per task (its latest state and what its events said), one row per event
of a task (its timeline), one row per worker, task counts per minute (the
overview's chart) and the stream offset read up to, so a restarted dashboard
resumes where it stopped. Rows older than the stream's retention are pruned: the
index holds at most what the stream holds, on disk, never in memory.

Writes come from one ingest task (:meth:`HistoryIndex.ingest`, run in a thread);
every read opens its own connection (WAL mode lets readers and the writer work at
once), so a page never waits for ingest.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["TASK_STATES", "HistoryIndex", "TaskQuery"]

# Event type -> the task state the dashboard shows.
_STATE_OF = {
    "task.sent": "SENT",
    "task.received": "RECEIVED",
    "task.started": "STARTED",
    "task.succeeded": "SUCCESS",
    "task.failed": "FAILURE",
    "task.retried": "RETRY",
    "task.rejected": "REJECTED",
    "task.revoked": "REVOKED",
}
TASK_STATES = tuple(dict.fromkeys(_STATE_OF.values()))
_FINAL = {"SUCCESS", "FAILURE", "REJECTED", "REVOKED"}
# Fields with a column of their own; every other field of a received event is kept in
# ``extra`` (a workflow's ids, eta, expires...).
_COLUMNS = {
    "type",
    "timestamp",
    "ts",
    "task",
    "id",
    "worker",
    "queue",
    "args",
    "kwargs",
    "args_repr",
    "kwargs_repr",
    "result",
    "error",
    "message",
    "traceback",
    "runtime",
    "retries",
    "parent_id",
    "root_id",
    "shadow",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT,
    queue TEXT,
    args TEXT,
    kwargs TEXT,
    result TEXT,
    error TEXT,
    message TEXT,
    traceback TEXT,
    runtime REAL,
    retries INTEGER NOT NULL DEFAULT 0,
    parent_id TEXT,
    root_id TEXT,
    retry_of TEXT,
    extra TEXT,
    sent REAL,
    received REAL,
    started REAL,
    finished REAL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_updated ON tasks (updated);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, updated);
CREATE INDEX IF NOT EXISTS tasks_name ON tasks (name, updated);
CREATE INDEX IF NOT EXISTS tasks_worker ON tasks (worker, updated);
CREATE INDEX IF NOT EXISTS tasks_parent ON tasks (parent_id);
CREATE INDEX IF NOT EXISTS tasks_root ON tasks (root_id);
CREATE TABLE IF NOT EXISTS events (
    task_id TEXT NOT NULL,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    worker TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_task ON events (task_id, at);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    state TEXT NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS minutes (
    minute INTEGER PRIMARY KEY,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    received INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _seconds(event: Mapping[str, Any]) -> float:
    stamp = event.get("timestamp")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            pass
    return time.time()


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """The filters of the tasks page and ``GET /api/tasks``."""

    state: str | None = None
    name: str | None = None
    worker: str | None = None
    since: float | None = None  # seconds since the epoch
    text: str | None = None  # in the id, name, arguments, result or error
    limit: int = 50
    offset: int = 0


class HistoryIndex:
    """The SQLite file of one dashboard (``path``; ``:memory:`` is not supported)."""

    def __init__(self, path: str | Path, *, retention: float = 7 * 86400.0) -> None:
        self.path = str(path)
        self.retention = retention
        self._write_lock = threading.Lock()
        self._writer = self._open()
        self._writer.executescript(_SCHEMA)
        self._last_prune = 0.0

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=30)
        connection.row_factory = sqlite3.Row
        try:
            yield connection
        finally:
            connection.close()

    # -- ingest -------------------------------------------------------------------------------

    def offset(self) -> int | None:
        """The last stream offset indexed (None: nothing yet)."""
        row = self._writer.execute("SELECT value FROM meta WHERE key = 'offset'").fetchone()
        return int(row[0]) if row else None

    def ingest(self, events: Iterable[Mapping[str, Any]], offset: int | None) -> int:
        """Index ``events`` and remember ``offset`` in one transaction; how many were indexed."""
        count = 0
        with self._write_lock, self._writer as db:
            for event in events:
                kind = str(event.get("type", ""))
                if kind.startswith("task."):
                    self._task_event(db, kind, event)
                elif kind.startswith("worker."):
                    self._worker_event(db, kind, event)
                else:
                    continue
                count += 1
            if offset is not None:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('offset', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(offset),),
                )
        now = time.time()
        if now - self._last_prune > 60:
            self._last_prune = now
            self.prune(now - self.retention)
        return count

    def _task_event(self, db: sqlite3.Connection, kind: str, event: Mapping[str, Any]) -> None:
        task_id = event.get("id")
        if not isinstance(task_id, str) or not task_id or task_id == "-":
            return
        at = _seconds(event)
        state = _STATE_OF.get(kind, kind.removeprefix("task.").upper())
        detail = {
            k: v
            for k, v in event.items()
            if k in ("reason", "error", "message", "runtime", "retries", "countdown", "terminated")
        }
        db.execute(
            "INSERT INTO events (task_id, at, type, worker, detail) VALUES (?, ?, ?, ?, ?)",
            (task_id, at, kind, event.get("worker"), _json(detail) if detail else None),
        )
        name = str(event.get("task") or "?")
        args = event.get("args", event.get("args_repr"))
        kwargs = event.get("kwargs", event.get("kwargs_repr"))
        extra = (
            {k: v for k, v in event.items() if k not in _COLUMNS}
            if kind
            in (
                "task.received",
                "task.sent",
            )
            else {}
        )
        # A later event sets the state; an earlier one (another worker's clock, a batch
        # that arrived late) only fills in what is missing.
        db.execute(
            """
            INSERT INTO tasks (id, name, state, worker, queue, args, kwargs, result, error,
                message, traceback, runtime, retries, parent_id, root_id, extra, sent,
                received, started, finished, updated)
            VALUES (:id, :name, :state, :worker, :queue, :args, :kwargs, :result, :error,
                :message, :traceback, :runtime, :retries, :parent_id, :root_id, :extra, :sent,
                :received, :started, :finished, :at)
            ON CONFLICT (id) DO UPDATE SET
                name = excluded.name,
                state = CASE WHEN excluded.updated >= tasks.updated
                    THEN excluded.state ELSE tasks.state END,
                worker = COALESCE(excluded.worker, tasks.worker),
                queue = COALESCE(excluded.queue, tasks.queue),
                args = COALESCE(excluded.args, tasks.args),
                kwargs = COALESCE(excluded.kwargs, tasks.kwargs),
                result = COALESCE(excluded.result, tasks.result),
                error = COALESCE(excluded.error, tasks.error),
                message = COALESCE(excluded.message, tasks.message),
                traceback = COALESCE(excluded.traceback, tasks.traceback),
                runtime = COALESCE(excluded.runtime, tasks.runtime),
                retries = MAX(excluded.retries, tasks.retries),
                parent_id = COALESCE(excluded.parent_id, tasks.parent_id),
                root_id = COALESCE(excluded.root_id, tasks.root_id),
                extra = COALESCE(excluded.extra, tasks.extra),
                sent = COALESCE(tasks.sent, excluded.sent),
                received = COALESCE(tasks.received, excluded.received),
                started = COALESCE(excluded.started, tasks.started),
                finished = COALESCE(excluded.finished, tasks.finished),
                updated = MAX(excluded.updated, tasks.updated)
            """,
            {
                "id": task_id,
                "name": name,
                "state": state,
                "worker": event.get("worker") if kind != "task.sent" else None,
                "queue": event.get("queue"),
                "args": _json(args),
                "kwargs": _json(kwargs),
                "result": event.get("result"),
                "error": event.get("error") if kind in ("task.failed", "task.rejected") else None,
                "message": event.get("message")
                if kind in ("task.failed", "task.rejected")
                else None,
                "traceback": event.get("traceback"),
                "runtime": event.get("runtime"),
                "retries": int(event.get("retries") or 0),
                "parent_id": event.get("parent_id"),
                "root_id": event.get("root_id"),
                "extra": _json(extra) if extra else None,
                "sent": at if kind == "task.sent" else None,
                "received": at if kind == "task.received" else None,
                "started": at if kind == "task.started" else None,
                "finished": at if state in _FINAL else None,
                "at": at,
            },
        )
        column = {"SUCCESS": "succeeded", "FAILURE": "failed", "RECEIVED": "received"}.get(state)
        if column is not None:
            db.execute(
                f"INSERT INTO minutes (minute, {column}) VALUES (?, 1) "
                f"ON CONFLICT (minute) DO UPDATE SET {column} = {column} + 1",
                (int(at // 60),),
            )

    def _worker_event(self, db: sqlite3.Connection, kind: str, event: Mapping[str, Any]) -> None:
        name = event.get("worker")
        if not isinstance(name, str):
            return
        at = _seconds(event)
        row = db.execute("SELECT info FROM workers WHERE name = ?", (name,)).fetchone()
        info = json.loads(row[0]) if row else {}
        info.update({k: v for k, v in event.items() if k not in ("type", "timestamp", "worker")})
        state = "offline" if kind == "worker.offline" else "online"
        db.execute(
            "INSERT INTO workers (name, info, state, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET info = excluded.info, state = excluded.state, "
            "last_seen = MAX(excluded.last_seen, workers.last_seen)",
            (name, _json(info), state, at),
        )

    def link_retry(
        self, old_id: str, new_id: str, name: str, args: Any, kwargs: Any, sent: float
    ) -> None:
        """A task sent again from the dashboard at ``sent``: a SENT row linked to the one it
        retries (its worker's events, which may be indexed first, keep their state)."""
        now = sent
        with self._write_lock, self._writer as db:
            db.execute(
                "INSERT INTO tasks (id, name, state, args, kwargs, retry_of, sent, updated) "
                "VALUES (?, ?, 'SENT', ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "retry_of = excluded.retry_of",
                (new_id, name, _json(args), _json(kwargs), old_id, now, now),
            )
            db.execute(
                "INSERT INTO events (task_id, at, type, detail) VALUES (?, ?, 'dashboard.retry', ?)",
                (old_id, now, _json({"retried_as": new_id})),
            )

    def prune(self, before: float) -> None:
        """Forget what is older than ``before`` (the stream no longer holds it either)."""
        with self._write_lock, self._writer as db:
            db.execute("DELETE FROM tasks WHERE updated < ?", (before,))
            db.execute("DELETE FROM events WHERE at < ?", (before,))
            db.execute("DELETE FROM minutes WHERE minute < ?", (int(before // 60),))
            db.execute("DELETE FROM workers WHERE last_seen < ?", (before,))

    # -- reads --------------------------------------------------------------------------------

    def tasks(self, query: TaskQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of tasks, newest first, and how many match."""
        where: list[str] = []
        params: list[Any] = []
        if query.state:
            where.append("state = ?")
            params.append(query.state.upper())
        if query.name:
            where.append("name = ?")
            params.append(query.name)
        if query.worker:
            where.append("worker = ?")
            params.append(query.worker)
        if query.since is not None:
            where.append("updated >= ?")
            params.append(query.since)
        if query.text:
            like = f"%{query.text}%"
            where.append(
                "(id = ? OR name LIKE ? OR args LIKE ? OR kwargs LIKE ? OR result LIKE ? "
                "OR message LIKE ?)"
            )
            params += [query.text, like, like, like, like, like]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._reader() as db:
            total = db.execute(f"SELECT COUNT(*) FROM tasks {clause}", params).fetchone()[0]
            rows = db.execute(
                f"SELECT * FROM tasks {clause} ORDER BY updated DESC LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
        return [_task(row) for row in rows], int(total)

    def task(self, task_id: str) -> dict[str, Any] | None:
        """One task with its timeline, children and retries."""
        with self._reader() as db:
            row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                return None
            task = _task(row)
            task["timeline"] = [
                {
                    "at": r["at"],
                    "type": r["type"],
                    "worker": r["worker"],
                    **(json.loads(r["detail"]) if r["detail"] else {}),
                }
                for r in db.execute(
                    "SELECT * FROM events WHERE task_id = ? ORDER BY at, rowid", (task_id,)
                )
            ]
            task["children"] = [
                _task(r)
                for r in db.execute(
                    "SELECT * FROM tasks WHERE parent_id = ? ORDER BY COALESCE(sent, received, updated) "
                    "LIMIT 500",
                    (task_id,),
                )
            ]
            task["retried_as"] = [
                r[0] for r in db.execute("SELECT id FROM tasks WHERE retry_of = ?", (task_id,))
            ]
            root = task.get("root_id") or task_id
            task["workflow"] = [
                _task(r)
                for r in db.execute(
                    "SELECT * FROM tasks WHERE root_id = ? OR id = ? LIMIT 500", (root, root)
                )
            ]
        return task

    def workers(self, online_within: float = 60.0) -> list[dict[str, Any]]:
        """Every worker seen in the retention window; ``online`` when heard from lately."""
        now = time.time()
        with self._reader() as db:
            rows = db.execute("SELECT * FROM workers ORDER BY name").fetchall()
            running = {
                r["worker"]: r["n"]
                for r in db.execute(
                    "SELECT worker, COUNT(*) AS n FROM tasks WHERE state = 'STARTED' "
                    "GROUP BY worker"
                )
            }
        workers = []
        for row in rows:
            info = json.loads(row["info"])
            online = row["state"] == "online" and now - row["last_seen"] < online_within
            workers.append(
                {
                    **info,
                    "name": row["name"],
                    "online": online,
                    "last_seen": row["last_seen"],
                    "running": running.get(row["name"], 0),
                }
            )
        return workers

    def active(self, worker: str, limit: int = 100) -> list[dict[str, Any]]:
        """Tasks a worker has started and not finished, oldest first."""
        with self._reader() as db:
            rows = db.execute(
                "SELECT * FROM tasks WHERE worker = ? AND state = 'STARTED' "
                "ORDER BY started LIMIT ?",
                (worker, limit),
            ).fetchall()
        return [_task(r) for r in rows]

    def throughput(self, minutes: int = 60) -> list[dict[str, int]]:
        """Per minute for the last ``minutes``: received, succeeded, failed (zeros included)."""
        now = int(time.time() // 60)
        first = now - minutes + 1
        with self._reader() as db:
            found = {
                r["minute"]: r
                for r in db.execute("SELECT * FROM minutes WHERE minute >= ?", (first,))
            }
        return [
            {
                "minute": m * 60,
                "received": found[m]["received"] if m in found else 0,
                "succeeded": found[m]["succeeded"] if m in found else 0,
                "failed": found[m]["failed"] if m in found else 0,
            }
            for m in range(first, now + 1)
        ]

    def counts(self) -> dict[str, dict[str, int]]:
        """Tasks by name and state (the Prometheus gauge)."""
        with self._reader() as db:
            rows = db.execute("SELECT name, state, COUNT(*) AS n FROM tasks GROUP BY name, state")
            counts: dict[str, dict[str, int]] = {}
            for row in rows:
                counts.setdefault(row["name"], {})[row["state"]] = int(row["n"])
        return counts

    def runtimes(self, limit: int = 10_000) -> list[tuple[str, float]]:
        """The latest finished tasks' runtimes (the Prometheus histogram)."""
        with self._reader() as db:
            rows = db.execute(
                "SELECT name, runtime FROM tasks WHERE runtime IS NOT NULL "
                "ORDER BY updated DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [(r["name"], float(r["runtime"])) for r in rows]

    def last_run(self, name: str) -> float | None:
        with self._reader() as db:
            row = db.execute(
                "SELECT MAX(COALESCE(received, sent)) FROM tasks WHERE name = ?", (name,)
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None


def _task(row: sqlite3.Row) -> dict[str, Any]:
    task = dict(row)
    for key in ("args", "kwargs", "extra"):
        if task.get(key) is not None:
            task[key] = json.loads(task[key])
    task.update(task.pop("extra") or {})
    return task
