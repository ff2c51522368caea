"""The Redis result store (redis-py, sync and asyncio).

One key per task (``<prefix><task id>``, the stored JSON) with a TTL for expiry; each
write also publishes the JSON on a channel of the same name, so a waiting reader
subscribes, reads once, then only wakes for the writes (no round trip per poll).
Write and publish go out in one pipeline: one round trip per state.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aredis
from redis.exceptions import RedisError

from amqpq.envelope import Reply
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

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

DEFAULT_PREFIX = "amqpq:result:"
_CONNECT_TIMEOUT = 5.0
_WAKE = 5.0  # longest single wait on the channel (a reader re-checks its deadline)


def _without_options(url: str) -> str:
    """The URL redis-py is given: amqpq's own ``prefix`` option taken out."""
    parts = urlsplit(url)
    kept = {k: v for k, v in url_options(url).items() if k not in ("prefix", "max_bytes")}
    return urlunsplit(parts._replace(query=urlencode(kept)))


class RedisStore:
    """``redis://[:password@]host:port/db[?prefix=amqpq:result:]``."""

    def __init__(self, url: str) -> None:
        self.url = hide_password(url)
        self.prefix = url_options(url).get("prefix", DEFAULT_PREFIX)
        self.max_bytes = max_bytes_of(url)
        self._client_url = _without_options(url)
        self._sync: redis.Redis | None = None
        self._async: dict[asyncio.AbstractEventLoop, aredis.Redis] = {}
        self._writes: LoopBatchers[tuple[str, str, int]] = LoopBatchers(self._awrite_keys)

    def key(self, task_id: str) -> str:
        return f"{self.prefix}{task_id}"

    def _error(self, exc: Exception) -> ResultStoreError:
        return ResultStoreError(f"result store {self.url}: {exc}")

    def _client(self) -> redis.Redis:
        if self._sync is None:
            self._sync = redis.Redis.from_url(
                self._client_url, socket_connect_timeout=_CONNECT_TIMEOUT
            )
        return self._sync

    def _aclient(self) -> aredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            for stale in [lp for lp in self._async if lp.is_closed()]:
                del self._async[stale]
            client = aredis.Redis.from_url(
                self._client_url, socket_connect_timeout=_CONNECT_TIMEOUT
            )
            self._async[loop] = client
        return client

    @staticmethod
    def _ttl_ms(expires: float) -> int:
        return max(1, math.ceil(expires * 1000))

    # -- sync -------------------------------------------------------------------------------

    def save(self, reply: Reply, expires: float) -> None:
        key, text = self.key(reply.id), stored_text(reply, self.max_bytes)
        try:
            pipe = self._client().pipeline(transaction=False)
            pipe.set(key, text, px=self._ttl_ms(expires))
            pipe.publish(key, text)
            pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from None

    def load(self, task_id: str) -> StoredResult | None:
        try:
            raw: Any = self._client().get(self.key(task_id))
        except RedisError as exc:
            raise self._error(exc) from None
        return decode_stored(raw) if raw is not None else None

    def forget(self, task_id: str) -> None:
        try:
            self._client().delete(self.key(task_id))
        except RedisError as exc:
            raise self._error(exc) from None

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        key = self.key(task_id)
        try:
            pubsub = self._client().pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(key)  # before the read: no write falls in between
                stored = self.load(task_id)
                while not is_final(stored):
                    left = _WAKE if deadline is None else deadline - time.monotonic()
                    if left <= 0:
                        break
                    message = pubsub.get_message(timeout=min(left, _WAKE))
                    if message is not None and message.get("type") == "message":
                        stored = decode_stored(message["data"])
                return stored
            finally:
                pubsub.close()
        except RedisError as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        client, self._sync = self._sync, None
        if client is not None:
            client.close()

    # -- asyncio ----------------------------------------------------------------------------

    async def asave(self, reply: Reply, expires: float) -> None:
        # Writes of tasks that end together share one pipeline (one round trip).
        await self._writes.write(
            (self.key(reply.id), stored_text(reply, self.max_bytes), self._ttl_ms(expires))
        )

    async def _awrite_keys(self, items: list[tuple[str, str, int]]) -> None:
        try:
            pipe = self._aclient().pipeline(transaction=False)
            for key, text, ttl_ms in items:
                pipe.set(key, text, px=ttl_ms)
                pipe.publish(key, text)
            await pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from None

    async def aload(self, task_id: str) -> StoredResult | None:
        try:
            raw: Any = await self._aclient().get(self.key(task_id))
        except RedisError as exc:
            raise self._error(exc) from None
        return decode_stored(raw) if raw is not None else None

    async def aforget(self, task_id: str) -> None:
        try:
            await self._aclient().delete(self.key(task_id))
        except RedisError as exc:
            raise self._error(exc) from None

    async def await_final(self, task_id: str, timeout: float | None) -> StoredResult | None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        key = self.key(task_id)
        try:
            pubsub = self._aclient().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(key)
                stored = await self.aload(task_id)
                while not is_final(stored):
                    left = _WAKE if deadline is None else deadline - loop.time()
                    if left <= 0:
                        break
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=min(left, _WAKE)
                    )
                    if message is not None and message.get("type") == "message":
                        stored = decode_stored(message["data"])
                return stored
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        except RedisError as exc:
            raise self._error(exc) from None

    async def aclose(self) -> None:
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
