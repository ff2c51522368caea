"""The history in PostgreSQL (psycopg 3), for several dashboards sharing one database.

``postgresql://user[:password]@host:port/db[?table_prefix=amqpq_dashboard_]``: five
tables named with the prefix (``tasks``, ``events``, ``workers``, ``minutes``,
``meta``), created on first use. Each dashboard reads the stream itself and writes
what it read; the writes are idempotent (see :mod:`amqpq.dashboard.index`), and the
writers of one prefix take turns (a transaction-level advisory lock), so two
dashboards indexing the same events never deadlock on each other's rows. Reads use
connections of their own, so a page never waits for ingest.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import DictRow, dict_row

from amqpq.dashboard.index import EVENT_KEY, SCHEMA, HistoryError, HistoryIndex, Params
from amqpq.errors import ConfigError
from amqpq.settings import hide_password

__all__ = ["DEFAULT_PREFIX", "PostgresIndex"]

DEFAULT_PREFIX = "amqpq_dashboard_"
_CONNECT_TIMEOUT = 5
_IDLE_READERS = 4
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
_TABLES = ("tasks", "events", "workers", "minutes", "meta")

Connection = psycopg.Connection[DictRow]


def _text(value: Any) -> Any:
    # PostgreSQL's text cannot hold NUL, which a task's result or error message may.
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


def _clean(params: Params) -> Params:
    if isinstance(params, Mapping):
        return {key: _text(value) for key, value in params.items()}
    return [_text(value) for value in params]


class _Session:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def rows(self, query: str, params: Params = ()) -> list[dict[str, Any]]:
        cursor = self._connection.execute(query, _clean(params))
        return cursor.fetchall() if cursor.description else []

    def run(self, query: str, params: Params = ()) -> int:
        return self._connection.execute(query, _clean(params)).rowcount

    def run_many(self, query: str, params: Sequence[Params]) -> list[int]:
        if not params:
            return []
        counts = []
        with self._connection.cursor() as cursor:
            # One pipeline: the statements go out together, not one round trip each.
            cursor.executemany(query, [_clean(one) for one in params], returning=True)
            while True:
                counts.append(cursor.rowcount)
                if not cursor.nextset():
                    break
        return counts


def _split(url: str) -> tuple[str, str]:
    """(the URL libpq is given, the table prefix)."""
    parts = urlsplit(url)
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    prefix = options.pop("table_prefix", DEFAULT_PREFIX)
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(options))), prefix


class PostgresIndex(HistoryIndex):
    """The history in the database ``url`` names; connects (and creates the tables) now."""

    like = "ILIKE"  # as SQLite's LIKE: the case of letters does not matter
    event_order = "seq"

    def __init__(self, url: str, *, retention: float = 7 * 86400.0) -> None:
        super().__init__(retention)
        self.location = hide_password(url)
        self._conninfo, self.prefix = _split(url)
        if not _PREFIX.fullmatch(self.prefix):
            raise ConfigError(
                f"history {self.location}: table_prefix {self.prefix!r} is not a plain name"
            )
        self.tables = {name: f"{self.prefix}{name}" for name in _TABLES}
        # Writers of one set of tables take turns; a key of 32 bits from the prefix.
        self._lock_key = zlib.crc32(f"amqpq.dashboard:{self.prefix}".encode())
        self._write_lock = threading.Lock()
        self._writer: Connection | None = None
        self._idle_lock = threading.Lock()
        self._idle: list[Connection] = []
        self._closed = False
        names = {
            **self.tables,
            "real": "DOUBLE PRECISION",
            "p": self.prefix,
            "event_seq": ",\n    seq BIGINT GENERATED ALWAYS AS IDENTITY",
        }
        with self._writing() as db:
            for statement in [*SCHEMA.format(**names).split(";"), EVENT_KEY.format(**names)]:
                db.run(statement)

    def _error(self, exc: Exception) -> HistoryError:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        transient = isinstance(exc, psycopg.OperationalError)
        return HistoryError(f"history {self.location}: {first}", transient=transient)

    def _connect(self) -> Connection:
        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=_CONNECT_TIMEOUT,
            row_factory=dict_row,
            application_name=f"amqpq dashboard {self.prefix}"[:63],
        )

    @contextmanager
    def _writing(self) -> Iterator[_Session]:
        with self._write_lock:
            try:
                if self._writer is None or self._writer.closed:
                    self._writer = self._connect()
                writer = self._writer
                with writer.transaction():
                    writer.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                    yield _Session(writer)
            except psycopg.Error as exc:
                if self._writer is not None and self._writer.broken:
                    self._writer = None
                raise self._error(exc) from None

    def _reader(self) -> Connection:
        """An idle connection that still answers, or a new one."""
        while True:
            with self._idle_lock:
                if not self._idle:
                    break
                connection = self._idle.pop()
            try:
                connection.execute("SELECT 1")  # the server may have ended it meanwhile
                return connection
            except psycopg.Error:
                connection.close()
        return self._connect()

    @contextmanager
    def _reading(self) -> Iterator[_Session]:
        connection = None
        try:
            connection = self._reader()
            yield _Session(connection)
        except psycopg.Error as exc:
            raise self._error(exc) from None
        finally:
            if connection is not None:
                self._release(connection)

    def _release(self, connection: Connection) -> None:
        idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._idle_lock:
            if idle and not self._closed and len(self._idle) < _IDLE_READERS:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        with self._write_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
