"""The model of a stored result and the interface every result store implements."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from amqpq.envelope import ErrorInfo, Reply, TaskState
from amqpq.errors import BrokerError, ConfigError
from amqpq.settings import hide_password

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_RESULT_EXPIRES",
    "ResultStore",
    "ResultStoreError",
    "StoredResult",
    "decode_stored",
    "encode_stored",
    "max_bytes_of",
    "stored_text",
    "url_options",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""The largest stored state (its JSON, in bytes) unless the store's URL says ``?max_bytes=``:
far below Redis's and PostgreSQL's own limits (512 MB, 1 GB), which a worker would
otherwise meet by retrying a write that can never succeed."""

DEFAULT_RESULT_EXPIRES = 86_400.0
"""Seconds a stored result is kept (one day) unless the App, the task or the call says."""


class ResultStoreError(BrokerError):
    """The result store cannot be reached or refused an operation (the URL is named,
    its password hidden)."""


@dataclass(frozen=True, slots=True)
class StoredResult:
    """One task's last known state: the worker's reply (id, task name, state, result,
    error, progress meta, retries, worker) and when it was stored."""

    reply: Reply
    date_done: datetime

    @property
    def state(self) -> TaskState:
        return self.reply.state


def encode_stored(reply: Reply, now: datetime | None = None) -> str:
    """The JSON text a store keeps. Raises ValueError for a result JSON cannot hold."""
    try:
        data = reply.model_dump(mode="json", exclude_none=True)
        data["date_done"] = (now or datetime.now(UTC)).isoformat()
        return json.dumps(data, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # pydantic's serialisation error is a ValueError
        raise ValueError(f"the result is not JSON: {exc}") from None


def decode_stored(text: str | bytes) -> StoredResult:
    data = json.loads(text)
    done = data.pop("date_done", None)
    when = datetime.fromisoformat(done) if done else datetime.now(UTC)
    return StoredResult(Reply.model_validate(data), when)


def encode_error_instead(reply: Reply, exc: Exception) -> str:
    """What is stored when the result cannot be: a FAILURE naming why (nothing is lost
    silently; the caller gets an EncodeError)."""
    failed = reply.model_copy(
        update={
            "state": TaskState.FAILURE,
            "result": None,
            "error": ErrorInfo(type="EncodeError", message=str(exc)),
        }
    )
    return encode_stored(failed)


def stored_text(reply: Reply, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The JSON a store keeps for ``reply``: as is, or an EncodeError FAILURE when the
    result cannot be JSON or its JSON is larger than ``max_bytes``."""
    try:
        text = encode_stored(reply)
    except ValueError as exc:
        return encode_error_instead(reply, exc)
    size = len(text.encode())
    if size > max_bytes:
        return encode_error_instead(
            reply,
            ValueError(
                f"the result is too large to store: {size:,} bytes of JSON, the store "
                f"takes at most {max_bytes:,} (?max_bytes= in the result backend's URL)"
            ),
        )
    return text


def max_bytes_of(url: str) -> int:
    """``?max_bytes=`` of a store URL, or :data:`DEFAULT_MAX_BYTES`."""
    given = url_options(url).get("max_bytes")
    if given is None:
        return DEFAULT_MAX_BYTES
    try:
        value = int(given)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(
            f"result backend {hide_password(url)}: max_bytes={given!r} is not a positive number"
        )
    return value


def url_options(url: str) -> Mapping[str, str]:
    """The query options of a store URL (``?prefix=`` for Redis, ``?table=`` for PostgreSQL)."""
    return {key: values[-1] for key, values in parse_qs(urlsplit(url).query).items()}


class ResultStore(Protocol):
    """Where results are kept by task id. Sync methods for plain code, ``a*`` twins for
    asyncio; each may raise :class:`ResultStoreError`. ``wait`` returns once the task is
    final or the timeout passed, without a store round trip per poll."""

    url: str
    """The store's URL with its password hidden (for messages)."""

    def save(self, reply: Reply, expires: float) -> None: ...
    def load(self, task_id: str) -> StoredResult | None: ...
    def forget(self, task_id: str) -> None: ...
    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None: ...
    def close(self) -> None: ...

    async def asave(self, reply: Reply, expires: float) -> None: ...
    async def aload(self, task_id: str) -> StoredResult | None: ...
    async def aforget(self, task_id: str) -> None: ...
    async def await_final(self, task_id: str, timeout: float | None) -> StoredResult | None: ...
    async def aclose(self) -> None: ...


def is_final(stored: StoredResult | None) -> bool:
    return stored is not None and stored.reply.state.is_final


def remaining_of(deadline: float | None, now: float) -> float | None:
    return None if deadline is None else max(0.0, deadline - now)


def as_json(stored: StoredResult) -> dict[str, Any]:
    """The stored state as one JSON object (``amqpq result --json``)."""
    data = stored.reply.model_dump(mode="json", exclude_none=True)
    data.pop("protocol", None)
    data["date_done"] = stored.date_done.isoformat()
    return data
