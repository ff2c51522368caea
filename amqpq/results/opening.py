"""Which store a URL names: ``redis://``, ``postgresql://`` or ``memory://``."""

from __future__ import annotations

from urllib.parse import urlsplit

from amqpq.errors import ConfigError
from amqpq.results.base import ResultStore, max_bytes_of
from amqpq.settings import hide_password

__all__ = ["open_store"]


_SCHEMES = {
    "redis": "redis",
    "rediss": "redis",
    "postgresql": "postgres",
    "postgres": "postgres",
    "memory": "memory",
}


def open_store(url: str) -> ResultStore:
    """The store a URL names (nothing connects yet). Unknown scheme or missing extra:
    one :class:`ConfigError` line."""
    shown = hide_password(url)
    scheme = urlsplit(url).scheme.lower()
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise ConfigError(
            f"result backend {shown!r}: unknown scheme {scheme or '(none)'!r}; "
            "use redis://, rediss://, postgresql:// or memory://"
        )
    if kind == "memory":
        from amqpq.results.memory import MemoryStore

        return MemoryStore(max_bytes_of(url))
    extra = "redis" if kind == "redis" else "postgres"
    try:
        if kind == "redis":
            from amqpq.results.redis_store import RedisStore

            return RedisStore(url)
        from amqpq.results.postgres_store import PostgresStore

        return PostgresStore(url)
    except ImportError as exc:
        raise ConfigError(
            f"result backend {shown}: {exc.name or 'a client library'} is not installed; "
            f"pip install 'amqpq[{extra}]'"
        ) from None
