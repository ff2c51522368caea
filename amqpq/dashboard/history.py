"""Which history ``amqpq dashboard --db`` names: an SQLite file or a PostgreSQL URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from amqpq.dashboard.index import HistoryIndex
from amqpq.dashboard.sqlite_index import SqliteIndex
from amqpq.errors import ConfigError
from amqpq.settings import hide_password

__all__ = ["is_url", "open_history"]

_POSTGRES = ("postgresql", "postgres")


def is_url(location: str) -> bool:
    return "://" in location


def open_history(location: str, *, retention: float = 7 * 86400.0) -> HistoryIndex:
    """The history at ``location``: a ``postgresql://`` URL (connected now, the tables
    created) or the path of an SQLite file. A missing extra, an unknown scheme or an
    unreachable database: one :class:`~amqpq.errors.AmqpqError` line."""
    if not is_url(location):
        return SqliteIndex(location, retention=retention)
    shown = hide_password(location)
    scheme = urlsplit(location).scheme.lower()
    if scheme not in _POSTGRES:
        raise ConfigError(
            f"--db {shown}: unknown scheme {scheme!r}; use a file path or postgresql://"
        )
    try:
        from amqpq.dashboard.postgres_index import PostgresIndex
    except ImportError as exc:
        raise ConfigError(
            f"--db {shown}: {exc.name or 'psycopg'} is not installed; pip install 'amqpq[postgres]'"
        ) from None
    return PostgresIndex(location, retention=retention)
