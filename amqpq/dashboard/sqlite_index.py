"""The history in an SQLite file: the default, for one dashboard.

Writes come from one ingest task (run in a thread) through one connection; every
read opens its own connection (WAL mode lets readers and the writer work at once),
so a page never waits for ingest.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amqpq.dashboard.index import EVENT_KEY, SCHEMA, HistoryIndex, Params, qmark

__all__ = ["SqliteIndex"]


@functools.lru_cache(maxsize=1000)
def _qmark(query: str) -> str:
    return qmark(query)


class _Session:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def rows(self, query: str, params: Params = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self._connection.execute(_qmark(query), params)]

    def run(self, query: str, params: Params = ()) -> int:
        return self._connection.execute(_qmark(query), params).rowcount

    def run_many(self, query: str, params: Sequence[Params]) -> list[int]:
        converted = _qmark(query)
        return [self._connection.execute(converted, one).rowcount for one in params]


class SqliteIndex(HistoryIndex):
    """The SQLite file at ``path`` (``:memory:`` is not supported)."""

    # GREATEST is spelled MAX; LIKE ignores the case of ASCII letters already.
    greatest = "MAX"
    event_order = "rowid"

    def __init__(self, path: str | Path, *, retention: float = 7 * 86400.0) -> None:
        super().__init__(retention)
        self.path = str(path)
        self.location = self.path
        self._write_lock = threading.Lock()
        self._writer = self._open()
        names = {**self.tables, "real": "REAL", "p": "", "event_seq": ""}
        self._writer.executescript(SCHEMA.format(**names) + ";")
        # A file indexed before events had an identity may hold one twice: it keeps
        # working, without the key (one dashboard per file reads each record once).
        with contextlib.suppress(sqlite3.IntegrityError):
            self._writer.execute(EVENT_KEY.format(**names))

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
    def _writing(self) -> Iterator[_Session]:
        with self._write_lock, self._writer as connection:
            yield _Session(connection)

    @contextmanager
    def _reading(self) -> Iterator[_Session]:
        connection = sqlite3.connect(self.path, timeout=30)
        connection.row_factory = sqlite3.Row
        try:
            yield _Session(connection)
        finally:
            connection.close()
