"""The dashboard's history: an index built from the events stream, in SQLite or PostgreSQL.

One row per task (its latest state and what its events said), one row per event
of a task (its timeline), one row per worker, task counts per minute (the
overview's chart) and the stream offset read up to, so a restarted dashboard
resumes where it stopped. Rows older than the stream's retention are pruned: the
index holds at most what the stream holds, on disk, never in memory.

:class:`HistoryIndex` holds everything both databases share: what an event does to
the rows and every query, written once in the SQL both dialects accept. Its two
implementations (``sqlite_index``, ``postgres_index``) open connections, run a
transaction and name the few things the dialects spell differently.

Writes are idempotent, so several dashboards may index the same stream into one
database: an event is keyed by its task, type, time and worker, and one already
indexed changes nothing (no task row, no count per minute); the stored stream
offset only moves forward.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from amqpq.errors import AmqpqError

__all__ = [
    "EVENT_KEY",
    "SCHEMA",
    "TASK_STATES",
    "HistoryError",
    "HistoryIndex",
    "Params",
    "Session",
    "TaskQuery",
    "qmark",
]

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
_MINUTE_COLUMN = {"SUCCESS": "succeeded", "FAILURE": "failed", "RECEIVED": "received"}

# The schema, in the types both dialects know ({real}: a float of 8 bytes). Table and
# index names are formatted in ({tasks}, {events}...; {p}: the prefix of index names).
SCHEMA = """
CREATE TABLE IF NOT EXISTS {tasks} (
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
    runtime {real},
    retries INTEGER NOT NULL DEFAULT 0,
    parent_id TEXT,
    root_id TEXT,
    retry_of TEXT,
    extra TEXT,
    sent {real},
    received {real},
    started {real},
    finished {real},
    updated {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}tasks_updated ON {tasks} (updated);
CREATE INDEX IF NOT EXISTS {p}tasks_state ON {tasks} (state, updated);
CREATE INDEX IF NOT EXISTS {p}tasks_name ON {tasks} (name, updated);
CREATE INDEX IF NOT EXISTS {p}tasks_worker ON {tasks} (worker, updated);
CREATE INDEX IF NOT EXISTS {p}tasks_parent ON {tasks} (parent_id);
CREATE INDEX IF NOT EXISTS {p}tasks_root ON {tasks} (root_id);
CREATE TABLE IF NOT EXISTS {events} (
    task_id TEXT NOT NULL,
    at {real} NOT NULL,
    type TEXT NOT NULL,
    worker TEXT,
    detail TEXT{event_seq}
);
CREATE INDEX IF NOT EXISTS {p}events_task ON {events} (task_id, at);
CREATE INDEX IF NOT EXISTS {p}events_at ON {events} (at);
CREATE TABLE IF NOT EXISTS {workers} (
    name TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    state TEXT NOT NULL,
    last_seen {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS {minutes} (
    minute INTEGER PRIMARY KEY,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    received INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS {meta} (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""
# An event's identity: indexing it again (another dashboard, a re-read) adds nothing.
EVENT_KEY = (
    "CREATE UNIQUE INDEX IF NOT EXISTS {p}events_identity "
    "ON {events} (task_id, at, type, COALESCE(worker, ''))"
)


class HistoryError(AmqpqError):
    """The history's database cannot be reached or refused an operation; ``transient``
    when the connection was lost (the same write may work on the next one)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


Params = Sequence[Any] | Mapping[str, Any]


class Session(Protocol):
    """A connection of one implementation, as the shared code uses it. Queries use
    psycopg's placeholders (``%s``, ``%(name)s``); rows come back as dicts."""

    def rows(self, query: str, params: Params = ()) -> list[dict[str, Any]]: ...

    def run(self, query: str, params: Params = ()) -> int:
        """Run a change; the number of rows it changed."""
        ...

    def run_many(self, query: str, params: Sequence[Params]) -> list[int]:
        """Run a change once per set of ``params``, in order (pipelined where the client
        can); the number of rows each changed."""
        ...


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


_UPSERT_TASK = """
INSERT INTO {tasks} (id, name, state, worker, queue, args, kwargs, result, error,
    message, traceback, runtime, retries, parent_id, root_id, extra, sent,
    received, started, finished, updated)
VALUES (%(id)s, %(name)s, %(state)s, %(worker)s, %(queue)s, %(args)s, %(kwargs)s,
    %(result)s, %(error)s, %(message)s, %(traceback)s, %(runtime)s, %(retries)s,
    %(parent_id)s, %(root_id)s, %(extra)s, %(sent)s, %(received)s, %(started)s,
    %(finished)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name,
    state = CASE WHEN excluded.updated >= {tasks}.updated
        THEN excluded.state ELSE {tasks}.state END,
    worker = COALESCE(excluded.worker, {tasks}.worker),
    queue = COALESCE(excluded.queue, {tasks}.queue),
    args = COALESCE(excluded.args, {tasks}.args),
    kwargs = COALESCE(excluded.kwargs, {tasks}.kwargs),
    result = COALESCE(excluded.result, {tasks}.result),
    error = COALESCE(excluded.error, {tasks}.error),
    message = COALESCE(excluded.message, {tasks}.message),
    traceback = COALESCE(excluded.traceback, {tasks}.traceback),
    runtime = COALESCE(excluded.runtime, {tasks}.runtime),
    retries = {greatest}(excluded.retries, {tasks}.retries),
    parent_id = COALESCE(excluded.parent_id, {tasks}.parent_id),
    root_id = COALESCE(excluded.root_id, {tasks}.root_id),
    extra = COALESCE(excluded.extra, {tasks}.extra),
    sent = COALESCE({tasks}.sent, excluded.sent),
    received = COALESCE({tasks}.received, excluded.received),
    started = COALESCE(excluded.started, {tasks}.started),
    finished = COALESCE(excluded.finished, {tasks}.finished),
    updated = {greatest}(excluded.updated, {tasks}.updated)
"""


@dataclass(frozen=True, slots=True)
class _TaskEvent:
    event: tuple[Any, ...]  # its row of the events table
    row: dict[str, Any]  # the task's row as this event says it
    minute: tuple[int, str] | None  # the count per minute it adds to


def _task_event(kind: str, event: Mapping[str, Any]) -> _TaskEvent | None:
    task_id = event.get("id")
    if not isinstance(task_id, str) or not task_id or task_id == "-":
        return None
    at = _seconds(event)
    state = _STATE_OF.get(kind, kind.removeprefix("task.").upper())
    detail = {
        k: v
        for k, v in event.items()
        if k in ("reason", "error", "message", "runtime", "retries", "countdown", "terminated")
    }
    args = event.get("args", event.get("args_repr"))
    kwargs = event.get("kwargs", event.get("kwargs_repr"))
    extra = (
        {k: v for k, v in event.items() if k not in _COLUMNS}
        if kind in ("task.received", "task.sent")
        else {}
    )
    failed = kind in ("task.failed", "task.rejected")
    column = _MINUTE_COLUMN.get(state)
    return _TaskEvent(
        event=(task_id, at, kind, event.get("worker"), _json(detail) if detail else None),
        row={
            "id": task_id,
            "name": str(event.get("task") or "?"),
            "state": state,
            "worker": event.get("worker") if kind != "task.sent" else None,
            "queue": event.get("queue"),
            "args": _json(args),
            "kwargs": _json(kwargs),
            "result": _text(event.get("result")),
            "error": _text(event.get("error")) if failed else None,
            "message": _text(event.get("message")) if failed else None,
            "traceback": _text(event.get("traceback")),
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
        minute=None if column is None else (int(at // 60), column),
    )


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


class HistoryIndex(ABC):
    """The history of one dashboard, or of several sharing a database."""

    location: str
    """Where it is (a file, or a URL with its password hidden), for messages."""
    retention: float
    # The dialect: GREATEST of two values, a case-insensitive LIKE, the column that
    # orders events indexed at the same time, the names of the tables.
    greatest = "GREATEST"
    like = "LIKE"
    event_order = "rowid"
    tables: Mapping[str, str] = {
        "tasks": "tasks",
        "events": "events",
        "workers": "workers",
        "minutes": "minutes",
        "meta": "meta",
    }

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self._last_prune = 0.0
        self._queries: dict[str, str] = {}

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Session]:
        """One transaction of the (only) writer; commits on leaving."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Session]:
        """A connection for reads, never waiting for the writer."""

    @abstractmethod
    def close(self) -> None: ...

    def _sql(self, query: str) -> str:
        """``query`` in this dialect, with its tables' names (formatted once)."""
        known = self._queries.get(query)
        if known is None:
            known = query.format(greatest=self.greatest, like=self.like, **self.tables)
            if len(self._queries) < 1000:
                self._queries[query] = known
        return known

    # -- ingest -------------------------------------------------------------------------------

    def offset(self) -> int | None:
        """The last stream offset indexed (None: nothing yet)."""
        with self._reading() as db:
            rows = db.rows(self._sql("SELECT value FROM {meta} WHERE key = 'offset'"))
        return int(rows[0]["value"]) if rows else None

    def ingest(self, events: Iterable[Mapping[str, Any]], offset: int | None) -> int:
        """Index ``events`` and remember ``offset`` in one transaction; how many were indexed
        (an event indexed before counts too)."""
        count = 0
        tasks: list[_TaskEvent] = []
        with self._writing() as db:
            for event in events:
                kind = str(event.get("type", ""))
                if kind.startswith("task."):
                    prepared = _task_event(kind, event)
                    if prepared is not None:
                        tasks.append(prepared)
                elif kind.startswith("worker."):
                    self._worker_event(db, kind, event)
                else:
                    continue
                count += 1
            self._task_events(db, tasks)
            if offset is not None:
                db.run(
                    self._sql(
                        "INSERT INTO {meta} (key, value) VALUES ('offset', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = CAST({greatest}("
                        "CAST({meta}.value AS BIGINT), CAST(excluded.value AS BIGINT)) AS TEXT)"
                    ),
                    (str(offset),),
                )
        now = time.time()
        if now - self._last_prune > 60:
            self._last_prune = now
            self.prune(now - self.retention)
        return count

    def _task_events(self, db: Session, tasks: list[_TaskEvent]) -> None:
        """The events first, then the tasks and counts of those not indexed before (in
        the order of the stream: a task's rows do not depend on the events table)."""
        added = db.run_many(
            self._sql(
                "INSERT INTO {events} (task_id, at, type, worker, detail) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            ),
            [task.event for task in tasks],
        )
        fresh = [task for task, n in zip(tasks, added, strict=True) if n]
        # A later event sets the state; an earlier one (another worker's clock, a batch
        # that arrived late) only fills in what is missing.
        db.run_many(self._sql(_UPSERT_TASK), [task.row for task in fresh])
        minutes: dict[tuple[int, str], int] = {}
        for task in fresh:
            if task.minute is not None:
                minutes[task.minute] = minutes.get(task.minute, 0) + 1
        for (minute, column), n in sorted(minutes.items()):
            db.run(
                self._sql(
                    f"INSERT INTO {{minutes}} (minute, {column}) VALUES (%s, %s) "
                    f"ON CONFLICT (minute) DO UPDATE SET {column} = {{minutes}}.{column} + %s"
                ),
                (minute, n, n),
            )

    def _worker_event(self, db: Session, kind: str, event: Mapping[str, Any]) -> None:
        name = event.get("worker")
        if not isinstance(name, str):
            return
        at = _seconds(event)
        rows = db.rows(self._sql("SELECT info FROM {workers} WHERE name = %s"), (name,))
        info = json.loads(rows[0]["info"]) if rows else {}
        info.update({k: v for k, v in event.items() if k not in ("type", "timestamp", "worker")})
        state = "offline" if kind == "worker.offline" else "online"
        # An event older than the worker's row (read again by a dashboard that lags
        # behind another one) does not undo what a later one said.
        db.run(
            self._sql(
                "INSERT INTO {workers} (name, info, state, last_seen) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET "
                "info = CASE WHEN excluded.last_seen >= {workers}.last_seen "
                "THEN excluded.info ELSE {workers}.info END, "
                "state = CASE WHEN excluded.last_seen >= {workers}.last_seen "
                "THEN excluded.state ELSE {workers}.state END, "
                "last_seen = {greatest}(excluded.last_seen, {workers}.last_seen)"
            ),
            (name, _json(info), state, at),
        )

    def link_retry(
        self, old_id: str, new_id: str, name: str, args: Any, kwargs: Any, sent: float
    ) -> None:
        """A task sent again from the dashboard at ``sent``: a SENT row linked to the one it
        retries (its worker's events, which may be indexed first, keep their state)."""
        with self._writing() as db:
            db.run(
                self._sql(
                    "INSERT INTO {tasks} (id, name, state, args, kwargs, retry_of, sent, updated) "
                    "VALUES (%s, %s, 'SENT', %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                    "retry_of = excluded.retry_of"
                ),
                (new_id, name, _json(args), _json(kwargs), old_id, sent, sent),
            )
            db.run(
                self._sql(
                    "INSERT INTO {events} (task_id, at, type, detail) "
                    "VALUES (%s, %s, 'dashboard.retry', %s) ON CONFLICT DO NOTHING"
                ),
                (old_id, sent, _json({"retried_as": new_id})),
            )

    def prune(self, before: float) -> None:
        """Forget what is older than ``before`` (the stream no longer holds it either)."""
        with self._writing() as db:
            db.run(self._sql("DELETE FROM {tasks} WHERE updated < %s"), (before,))
            db.run(self._sql("DELETE FROM {events} WHERE at < %s"), (before,))
            db.run(self._sql("DELETE FROM {minutes} WHERE minute < %s"), (int(before // 60),))
            db.run(self._sql("DELETE FROM {workers} WHERE last_seen < %s"), (before,))

    # -- reads --------------------------------------------------------------------------------

    def tasks(self, query: TaskQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of tasks, newest first, and how many match."""
        where: list[str] = []
        params: list[Any] = []
        if query.state:
            where.append("state = %s")
            params.append(query.state.upper())
        if query.name:
            where.append("name = %s")
            params.append(query.name)
        if query.worker:
            where.append("worker = %s")
            params.append(query.worker)
        if query.since is not None:
            where.append("updated >= %s")
            params.append(query.since)
        if query.text:
            like = f"%{query.text}%"
            where.append(
                "(id = %s OR name {like} %s OR args {like} %s OR kwargs {like} %s "
                "OR result {like} %s OR message {like} %s)"
            )
            params += [query.text, like, like, like, like, like]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._reading() as db:
            total = db.rows(self._sql(f"SELECT COUNT(*) AS n FROM {{tasks}} {clause}"), params)
            rows = db.rows(
                self._sql(
                    f"SELECT * FROM {{tasks}} {clause} ORDER BY updated DESC LIMIT %s OFFSET %s"
                ),
                [*params, query.limit, query.offset],
            )
        return [_task(row) for row in rows], int(total[0]["n"])

    def task(self, task_id: str) -> dict[str, Any] | None:
        """One task with its timeline, children and retries."""
        with self._reading() as db:
            rows = db.rows(self._sql("SELECT * FROM {tasks} WHERE id = %s"), (task_id,))
            if not rows:
                return None
            task = _task(rows[0])
            task["timeline"] = [
                {
                    "at": r["at"],
                    "type": r["type"],
                    "worker": r["worker"],
                    **(json.loads(r["detail"]) if r["detail"] else {}),
                }
                for r in db.rows(
                    self._sql(
                        "SELECT at, type, worker, detail FROM {events} WHERE task_id = %s "
                        f"ORDER BY at, {self.event_order}"
                    ),
                    (task_id,),
                )
            ]
            task["children"] = [
                _task(r)
                for r in db.rows(
                    self._sql(
                        "SELECT * FROM {tasks} WHERE parent_id = %s "
                        "ORDER BY COALESCE(sent, received, updated) LIMIT 500"
                    ),
                    (task_id,),
                )
            ]
            task["retried_as"] = [
                r["id"]
                for r in db.rows(
                    self._sql("SELECT id FROM {tasks} WHERE retry_of = %s ORDER BY id"),
                    (task_id,),
                )
            ]
            root = task.get("root_id") or task_id
            task["workflow"] = [
                _task(r)
                for r in db.rows(
                    self._sql("SELECT * FROM {tasks} WHERE root_id = %s OR id = %s LIMIT 500"),
                    (root, root),
                )
            ]
        return task

    def workers(self, online_within: float = 60.0) -> list[dict[str, Any]]:
        """Every worker seen in the retention window; ``online`` when heard from lately."""
        now = time.time()
        with self._reading() as db:
            rows = db.rows(self._sql("SELECT * FROM {workers} ORDER BY name"))
            running = {
                r["worker"]: r["n"]
                for r in db.rows(
                    self._sql(
                        "SELECT worker, COUNT(*) AS n FROM {tasks} WHERE state = 'STARTED' "
                        "GROUP BY worker"
                    )
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
                    "running": int(running.get(row["name"], 0)),
                }
            )
        return workers

    def active(self, worker: str, limit: int = 100) -> list[dict[str, Any]]:
        """Tasks a worker has started and not finished, oldest first."""
        with self._reading() as db:
            rows = db.rows(
                self._sql(
                    "SELECT * FROM {tasks} WHERE worker = %s AND state = 'STARTED' "
                    "ORDER BY started LIMIT %s"
                ),
                (worker, limit),
            )
        return [_task(r) for r in rows]

    def throughput(self, minutes: int = 60) -> list[dict[str, int]]:
        """Per minute for the last ``minutes``: received, succeeded, failed (zeros included)."""
        now = int(time.time() // 60)
        first = now - minutes + 1
        with self._reading() as db:
            found = {
                int(r["minute"]): r
                for r in db.rows(self._sql("SELECT * FROM {minutes} WHERE minute >= %s"), (first,))
            }
        return [
            {
                "minute": m * 60,
                "received": int(found[m]["received"]) if m in found else 0,
                "succeeded": int(found[m]["succeeded"]) if m in found else 0,
                "failed": int(found[m]["failed"]) if m in found else 0,
            }
            for m in range(first, now + 1)
        ]

    def counts(self) -> dict[str, dict[str, int]]:
        """Tasks by name and state (the Prometheus gauge)."""
        with self._reading() as db:
            rows = db.rows(
                self._sql("SELECT name, state, COUNT(*) AS n FROM {tasks} GROUP BY name, state")
            )
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["name"], {})[row["state"]] = int(row["n"])
        return counts

    def runtimes(self, limit: int = 10_000) -> list[tuple[str, float]]:
        """The latest finished tasks' runtimes (the Prometheus histogram)."""
        with self._reading() as db:
            rows = db.rows(
                self._sql(
                    "SELECT name, runtime FROM {tasks} WHERE runtime IS NOT NULL "
                    "ORDER BY updated DESC LIMIT %s"
                ),
                (limit,),
            )
        return [(r["name"], float(r["runtime"])) for r in rows]

    def last_run(self, name: str) -> float | None:
        with self._reading() as db:
            rows = db.rows(
                self._sql(
                    "SELECT MAX(COALESCE(received, sent)) AS last FROM {tasks} WHERE name = %s"
                ),
                (name,),
            )
        return float(rows[0]["last"]) if rows and rows[0]["last"] is not None else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _task(row: Mapping[str, Any]) -> dict[str, Any]:
    task = dict(row)
    for key in ("args", "kwargs", "extra"):
        if task.get(key) is not None:
            task[key] = json.loads(task[key])
    task.update(task.pop("extra") or {})
    return task


_NAMED = re.compile(r"%\((\w+)\)s")


def qmark(query: str) -> str:
    """A query in psycopg's placeholders with sqlite3's (``?``, ``:name``) instead."""
    return _NAMED.sub(r":\1", query).replace("%s", "?")
