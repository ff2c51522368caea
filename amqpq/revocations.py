"""Revoked task ids, kept on the broker in the stream ``amqpq.revoked``.

``amqpq revoke ID`` and ``AsyncResult.revoke()`` append a record to the stream
(persistent, confirmed). Every worker reads the stream from its first retained
record when it starts and keeps reading it live, so a revocation reaches the
workers running now, the ones that restart and the ones that start later, for
as long as the stream retains it (``x-max-age`` 24 h, see docs/operations.md).
A worker that consumes a revoked task does not run it: it acks it, answers the
caller ``REVOKED`` and counts it.

To know when it has read everything published before it started, a worker
appends a small ``marker`` record with a nonce of its own and waits (up to a few
seconds) until it reads it back; tasks consumed meanwhile wait for that.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from amqpq.codec import CONTENT_TYPE, MessageProperties, OutgoingMessage
from amqpq.errors import AmqpqError, ConfigError
from amqpq.settings import connection_name
from amqpq.topology.infra import revocations_queue_name
from amqpq.wire import revocations_consumer_tag

if TYPE_CHECKING:
    from amqpq.transport.aio import AsyncBroker
    from amqpq.transport.base import ConfirmingPublisher
    from amqpq.transport.broadcast import StreamReader

__all__ = [
    "RETENTION",
    "RevocationRecord",
    "Revocations",
    "arevoke",
    "revocation_message",
    "revoke",
]

log = logging.getLogger("amqpq.revocations")

RETENTION = timedelta(hours=24)
"""Records older than this are ignored (the stream drops them by segment, later)."""
_MAX_IDS = 1_000_000


class RevocationRecord(BaseModel):
    """One record of the stream (JSON). ``marker`` records only say "a worker started"."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    op: Literal["revoke", "marker"] = "revoke"
    ids: tuple[str, ...] = ()
    terminate: bool = False
    at: datetime
    by: str | None = None
    nonce: str | None = None


def revocation_message(
    ids: Sequence[str], *, terminate: bool = False, prefix: str = "amqpq", by: str | None = None
) -> OutgoingMessage:
    """The stream record revoking ``ids`` (published to the default exchange)."""
    clean = [i for i in dict.fromkeys(ids) if i]
    if not clean:
        raise ConfigError("nothing to revoke: give at least one task id")
    record = RevocationRecord(
        op="revoke", ids=tuple(clean), terminate=terminate, at=datetime.now(UTC), by=by
    )
    return _message(record, prefix)


def _message(record: RevocationRecord, prefix: str) -> OutgoingMessage:
    return OutgoingMessage(
        body=record.model_dump_json(exclude_none=True).encode(),
        properties=MessageProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=2,
            type=f"amqpq.{record.op}",
            timestamp=record.at.replace(microsecond=0),
        ),
        exchange="",
        routing_key=revocations_queue_name(prefix),
        mandatory=True,  # no stream (topology not applied): an error, not a silent drop
    )


def _by() -> str:
    return connection_name("revoke").removeprefix("amqpq ")


def revoke(
    publish: Callable[[list[OutgoingMessage]], list[BaseException | None]],
    ids: Iterable[str],
    *,
    terminate: bool = False,
    prefix: str = "amqpq",
) -> None:
    """Revoke task ids from synchronous code, through ``publish`` (a producer's
    ``publish_messages``)."""
    message = revocation_message(list(ids), terminate=terminate, prefix=prefix, by=_by())
    [error] = publish([message])
    if error is not None:
        raise error


async def arevoke(
    publish: Callable[[OutgoingMessage], Awaitable[None]],
    ids: Iterable[str],
    *,
    terminate: bool = False,
    prefix: str = "amqpq",
) -> None:
    """Revoke task ids from asyncio code, through ``publish`` (an async producer's
    ``publish_message``)."""
    message = revocation_message(list(ids), terminate=terminate, prefix=prefix, by=_by())
    await publish(message)


class Revocations:
    """A worker's view of the stream: the revoked ids, and live ``terminate`` requests."""

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        prefix: str,
        worker_name: str,
        on_terminate: Callable[[Sequence[str]], None] | None = None,
        retention: timedelta = RETENTION,
        ready_timeout: float = 10.0,
    ) -> None:
        self._broker = broker
        self._prefix = prefix
        self._worker = worker_name
        self._on_terminate = on_terminate
        self._retention = retention
        self._ready_timeout = ready_timeout
        self._nonce = uuid.uuid4().hex
        self._ids: dict[str, datetime] = {}
        self._ready = asyncio.Event()
        self._reader: StreamReader | None = None
        self._publisher: ConfirmingPublisher | None = None
        self.enabled = False
        self.records = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Iterable[str], at: datetime | None = None) -> list[str]:
        """Revoke locally (the control command does this before the stream record arrives)."""
        when = at or datetime.now(UTC)
        new = [i for i in ids if i not in self._ids]
        for task_id in new:
            self._ids[task_id] = when
        if len(self._ids) > _MAX_IDS:
            self._prune()
        return new

    def _prune(self) -> None:
        horizon = datetime.now(UTC) - self._retention
        for task_id in [i for i, at in self._ids.items() if at < horizon]:
            del self._ids[task_id]
        while len(self._ids) > _MAX_IDS:
            del self._ids[next(iter(self._ids))]

    async def start(self, publisher: ConfirmingPublisher) -> None:
        """Read the stream from its start; append our marker. Never raises: without the
        stream (``--no-declare`` on an old topology) revocations are off, with a warning."""
        # aio-pika only where the stream is read (a worker): the App imports this module
        # for revoke(), and importing the App loads no AMQP client library.
        from amqpq.transport.broadcast import StreamReader

        name = revocations_queue_name(self._prefix)
        reader = StreamReader(self._broker, name, on_record=self._on_record, offset="first")
        try:
            await reader.start(consumer_tag=revocations_consumer_tag(self._worker))
            marker = RevocationRecord(
                op="marker", at=datetime.now(UTC), by=self._worker, nonce=self._nonce
            )
            await publisher.publish(_message(marker, self._prefix))
        except AmqpqError as exc:
            log.warning("revocations are off in this worker: %s", exc)
            await reader.close()
            self._ready.set()
            return
        self._reader = reader
        self._publisher = publisher
        self.enabled = True
        # While the stream's connection is down, a revocation may be published that this
        # worker has not read: hold tasks again until the stream is read up to a new marker.
        self._broker.on_lost.append(self._ready.clear)
        self._broker.on_reconnect.append(self._read_up_to_date_again)

    async def _read_up_to_date_again(self) -> None:
        publisher = self._publisher
        if publisher is None:
            return
        self._nonce = uuid.uuid4().hex
        marker = RevocationRecord(
            op="marker", at=datetime.now(UTC), by=self._worker, nonce=self._nonce
        )
        try:
            await publisher.publish(_message(marker, self._prefix))
        except AmqpqError as exc:  # wait_ready's timeout lets the tasks go on, with a warning
            log.warning("revocations: no marker after a reconnect: %s", exc)

    async def wait_ready(self) -> None:
        """Until the records published before this worker started have been read."""
        if self._ready.is_set():
            return
        try:
            await asyncio.wait_for(self._ready.wait(), self._ready_timeout)
        except TimeoutError:
            if not self._ready.is_set():
                log.warning(
                    "revocations stream not read up to date within %.0fs; going on with %d ids",
                    self._ready_timeout,
                    len(self._ids),
                )
                self._ready.set()

    def _on_record(self, body: bytes, properties: MessageProperties, offset: int | None) -> None:
        try:
            record = RevocationRecord.model_validate_json(body)
        except ValidationError:
            log.warning("ignoring an unreadable record at offset %s of the revocations", offset)
            return
        self.records += 1
        if record.op == "marker":
            if record.nonce == self._nonce and not self._ready.is_set():
                log.debug("revocations read up to date: %d ids", len(self._ids))
                self._ready.set()
            return
        at = record.at if record.at.tzinfo else record.at.replace(tzinfo=UTC)
        if at < datetime.now(UTC) - self._retention:
            return
        new = self.add(record.ids, at)
        if new and self._ready.is_set():
            log.info(
                "revoked ids=%s terminate=%s by=%s", ",".join(new), record.terminate, record.by
            )
        if record.terminate and self._ready.is_set() and self._on_terminate is not None:
            self._on_terminate(record.ids)

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
