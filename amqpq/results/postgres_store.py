"""The PostgreSQL result store (psycopg 3, sync and async).

One table (``amqpq_results`` unless the URL says ``?table=``), created on first use:
the task id is its primary key, ``expires_at`` is indexed. A row past its expiry is
never returned, and expired rows are deleted by the writers at most once a minute.
Each write notifies the table's channel with the task id in the same statement, so a
waiting reader LISTENs, reads once, then only wakes for writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from amqpq.envelope import Reply
from amqpq.errors import ConfigError
from amqpq.results.base import (
    ResultStoreError,
    StoredResult,
    decode_stored,
    is_final,
    max_bytes_of,
    stored_text,
    url_options,
)
from amqpq.results.batching import LoopBatchers
from amqpq.settings import hide_password

__all__ = ["DEFAULT_TABLE", "PostgresStore"]

DEFAULT_TABLE = "amqpq_results"
_CONNECT_TIMEOUT = 5
_PURGE_EVERY = 60.0
_WAKE = 5.0
_RACED = (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable)
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


def _without_options(url: str) -> str:
    """The URL libpq is given (it refuses query options it does not know)."""
    parts = urlsplit(url)
    kept = {k: v for k, v in url_options(url).items() if k not in ("table", "max_bytes")}
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(kept)))


class PostgresStore:
    """``postgresql://user[:password]@host:port/db[?table=amqpq_results]``."""

    def __init__(self, url: str) -> None:
        self.url = hide_password(url)
        self.table = url_options(url).get("table", DEFAULT_TABLE)
        self.max_bytes = max_bytes_of(url)
        if not _TABLE_NAME.fullmatch(self.table):
            raise ConfigError(
                f"result backend {self.url}: table {self.table!r} is not a plain name"
            )
        self._conninfo = _without_options(url)
        self._lock = threading.Lock()
        self._sync: psycopg.Connection[TupleRow] | None = None
        self._async: dict[asyncio.AbstractEventLoop, psycopg.AsyncConnection[TupleRow]] = {}
        self._next_purge = 0.0
        self._writes: LoopBatchers[tuple[object, ...]] = LoopBatchers(self._awrite_rows)
        t = sql.Identifier(self.table)
        self._create = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, state text NOT NULL, "
                "task text, data text NOT NULL, date_done timestamptz NOT NULL, "
                "expires_at timestamptz NOT NULL)"
            ).format(t),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (expires_at)").format(
                sql.Identifier(f"{self.table}_expires_at"), t
            ),
        ]
        self._upsert = sql.SQL(
            "WITH written AS (INSERT INTO {} (id, state, task, data, date_done, expires_at) "
            "VALUES (%s, %s, %s, %s, now(), now() + %s * interval '1 second') "
            "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, task = EXCLUDED.task, "
            "data = EXCLUDED.data, date_done = EXCLUDED.date_done, "
            "expires_at = EXCLUDED.expires_at RETURNING id) "
            "SELECT pg_notify(%s, id) FROM written"
        ).format(t)
        self._select = sql.SQL("SELECT data FROM {} WHERE id = %s AND expires_at > now()").format(t)
        self._delete = sql.SQL("DELETE FROM {} WHERE id = %s").format(t)
        self._purge = sql.SQL("DELETE FROM {} WHERE expires_at <= now()").format(t)
        self._listen = sql.SQL("LISTEN {}").format(t)

    def _error(self, exc: Exception) -> ResultStoreError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ResultStoreError(f"result store {self.url}: {first}")

    def _purge_due(self) -> bool:
        now = time.monotonic()
        if now < self._next_purge:
            return False
        self._next_purge = now + _PURGE_EVERY
        return True

    # -- sync -------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[TupleRow]:
        conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT)
        for statement in self._create:
            with contextlib.suppress(*_RACED):  # another process created it just now
                conn.execute(statement)
        return conn

    def _run(self, query: sql.Composed, params: tuple[object, ...]) -> list[TupleRow]:
        with self._lock:
            try:
                if self._sync is None or self._sync.closed:
                    self._sync = self._connect()
                cursor = self._sync.execute(query, params)
                return cursor.fetchall() if cursor.description else []
            except psycopg.Error as exc:
                if self._sync is not None and self._sync.broken:
                    self._sync = None
                raise self._error(exc) from None

    def _row(self, reply: Reply, expires: float) -> tuple[object, ...]:
        """The upsert's parameters (the last one names the channel notified)."""
        text = stored_text(reply, self.max_bytes)
        return (reply.id, reply.state.value, reply.task, text, expires, self.table)

    def save(self, reply: Reply, expires: float) -> None:
        self._run(self._upsert, self._row(reply, expires))
        if self._purge_due():
            self._run(self._purge, ())

    def load(self, task_id: str) -> StoredResult | None:
        rows = self._run(self._select, (task_id,))
        return decode_stored(str(rows[0][0])) if rows else None

    def forget(self, task_id: str) -> None:
        self._run(self._delete, (task_id,))

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
            ) as listener:
                listener.execute(self._listen)
                stored = self.load(task_id)
                while not is_final(stored):
                    left = _WAKE if deadline is None else deadline - time.monotonic()
                    if left <= 0:
                        break
                    for note in listener.notifies(timeout=min(left, _WAKE), stop_after=1):
                        if note.payload == task_id:
                            stored = self.load(task_id)
                return stored
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        with self._lock:
            conn, self._sync = self._sync, None
        if conn is not None:
            conn.close()

    # -- asyncio ----------------------------------------------------------------------------

    async def _aconn(self) -> psycopg.AsyncConnection[TupleRow]:
        loop = asyncio.get_running_loop()
        conn = self._async.get(loop)
        if conn is None or conn.closed:
            for stale in [lp for lp in self._async if lp.is_closed()]:
                del self._async[stale]
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
            )
            for statement in self._create:
                with contextlib.suppress(*_RACED):
                    await conn.execute(statement)
            self._async[loop] = conn
        return conn

    async def _arun(self, query: sql.Composed, params: tuple[object, ...]) -> list[TupleRow]:
        conn = None
        try:
            conn = await self._aconn()
            cursor = await conn.execute(query, params)
            return await cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            if conn is not None and conn.broken:
                self._async.pop(asyncio.get_running_loop(), None)
            raise self._error(exc) from None

    async def asave(self, reply: Reply, expires: float) -> None:
        # Writes of tasks that end together share one transaction (one commit, one log sync).
        await self._writes.write(self._row(reply, expires))
        if self._purge_due():
            await self._arun(self._purge, ())

    async def _awrite_rows(self, rows: list[tuple[object, ...]]) -> None:
        conn = None
        try:
            conn = await self._aconn()
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.executemany(self._upsert, rows)
        except psycopg.Error as exc:
            if conn is not None and conn.broken:
                self._async.pop(asyncio.get_running_loop(), None)
            raise self._error(exc) from None

    async def aload(self, task_id: str) -> StoredResult | None:
        rows = await self._arun(self._select, (task_id,))
        return decode_stored(str(rows[0][0])) if rows else None

    async def aforget(self, task_id: str) -> None:
        await self._arun(self._delete, (task_id,))

    async def await_final(self, task_id: str, timeout: float | None) -> StoredResult | None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            listener = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
            )
            async with listener:
                await listener.execute(self._listen)
                stored = await self.aload(task_id)
                while not is_final(stored):
                    left = _WAKE if deadline is None else deadline - loop.time()
                    if left <= 0:
                        break
                    async for note in listener.notifies(timeout=min(left, _WAKE), stop_after=1):
                        if note.payload == task_id:
                            stored = await self.aload(task_id)
                return stored
        except psycopg.Error as exc:
            raise self._error(exc) from None

    async def aclose(self) -> None:
        conn = self._async.pop(asyncio.get_running_loop(), None)
        if conn is not None:
            await conn.close()
