"""Dead-letter queues: find them, read them without consuming, replay, purge (docs/dead-letters.md).

A dead letter says why it died in one of two ways:

- amqpq's own headers (``codec.HEADER_REASON`` and friends) when the worker put
  it there: bad input, a failed task, exhausted retries;
- RabbitMQ's ``x-death`` when the broker dead-lettered it: ``delivery_limit``
  (quorum queues), ``rejected``, ``expired``, ``maxlen``. The entry that counts
  is the one for the work queue: a message that went through the delay levels
  also has ``expired`` entries for those, and ``x-first-death-*`` names the
  first of them, not the work queue.

Replay republishes each dead letter to the route it originally took, with
``retries`` reset to 0 and the dead-letter headers stripped, waits for the
broker's confirm, and only then acks the dead letter: one message at a time,
so an interruption loses nothing (at-least-once: a crash between the confirm
and the ack leaves a copy in both places).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from amqpq.celery_wire import is_celery_message
from amqpq.codec import (
    HEADER_DEAD_AT,
    HEADER_ERROR_MESSAGE,
    HEADER_ERROR_TYPE,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_REASON,
    HEADER_TASK,
    OutgoingMessage,
    fresh_headers,
)
from amqpq.errors import ConfigError, PublishError
from amqpq.topology.infra import (
    dead_letter_exchange_name,
    dead_letter_queue_name,
    effective_topology,
    work_queues,
)
from amqpq.topology.models import Topology
from amqpq.transport.queues import GotMessage, QueueSession
from amqpq.wire import CELERY_HEADER_ID, CELERY_HEADER_RETRIES, is_direct_reply_to

__all__ = [
    "DEAD_LETTER_HEADERS",
    "DeadLetter",
    "DeadLetterQueue",
    "ReplayFailure",
    "ReplayResult",
    "dead_letter_queues",
    "describe",
    "peek",
    "purge",
    "replay",
    "replay_message",
    "resolve",
]

# What amqpq writes on a dead letter; stripped on replay.
DEAD_LETTER_HEADERS = (
    HEADER_REASON,
    HEADER_ERROR_TYPE,
    HEADER_ERROR_MESSAGE,
    HEADER_ORIGINAL_QUEUE,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_DEAD_AT,
)


@dataclass(frozen=True, slots=True)
class DeadLetterQueue:
    """A work queue and the queue its dead letters land in."""

    work_queue: str
    name: str
    type: str


def dead_letter_queues(topology: Topology) -> list[DeadLetterQueue]:
    """Every work queue that dead-letters into amqpq's ``<queue>.dlq``, in file order.

    Work queues with their own ``x-dead-letter-exchange`` are left out: where their
    dead letters go is the file's business.
    """
    infra = topology.infrastructure
    if not infra.dead_letters:
        return []
    effective = effective_topology(topology)
    dlx = dead_letter_exchange_name(infra.prefix)
    result: list[DeadLetterQueue] = []
    for queue in work_queues(topology):
        dlq = effective.queue(dead_letter_queue_name(queue.name))
        if dlq is None or not any(b.exchange == dlx for b in dlq.bindings):
            continue
        result.append(DeadLetterQueue(queue.name, dlq.name, dlq.type))
    return result


def resolve(topology: Topology, name: str) -> DeadLetterQueue:
    """The dead-letter queue named by its work queue (``work``) or by itself (``work.dlq``)."""
    queues = dead_letter_queues(topology)
    for dlq in queues:
        if name in (dlq.work_queue, dlq.name):
            return dlq
    known = ", ".join(q.work_queue for q in queues) or "none"
    queue = topology.queue(name)
    if queue is not None:
        if not topology.infrastructure.dead_letters:
            why = "infrastructure.dead_letters is off in the topology"
        elif "x-dead-letter-exchange" in queue.declare_arguments:
            why = "it sets its own x-dead-letter-exchange"
        else:
            why = "it is not a classic or quorum work queue"
        raise ConfigError(f"queue {name!r} has no amqpq dead-letter queue: {why}")
    raise ConfigError(
        f"{name!r} is not a work queue of the topology (work queues with a dead-letter "
        f"queue: {known})"
    )


# -- reading one dead letter ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why and where from, read from amqpq's headers or RabbitMQ's ``x-death``."""

    message: GotMessage
    source: str  # "amqpq" (the worker) or "broker" (x-death) or "unknown"
    reason: str | None
    error_type: str | None
    error_message: str | None
    task: str | None
    task_id: str | None
    retries: int | None
    queue: str | None
    exchange: str | None
    routing_key: str | None
    died_at: datetime | None
    deaths: int = 0  # x-death count for the work queue (broker dead letters)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "source": self.source,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "task": self.task,
            "task_id": self.task_id,
            "retries": self.retries,
            "original_queue": self.queue,
            "original_exchange": self.exchange,
            "original_routing_key": self.routing_key,
            "dead_at": self.died_at.isoformat() if self.died_at else None,
            "deaths": self.deaths,
            "body_bytes": len(self.message.body),
        }


def _body_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _death_entry(headers: dict[str, Any], work_queue: str) -> dict[str, Any] | None:
    """The ``x-death`` entry of the work queue; else the most recent one."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths:
        return None
    entries = [d for d in deaths if isinstance(d, dict)]
    for entry in entries:
        if entry.get("queue") == work_queue:
            return entry
    return entries[0] if entries else None


def describe(message: GotMessage, work_queue: str) -> DeadLetter:
    """Read one dead letter of ``work_queue`` (pure: the message is not touched)."""
    headers = message.properties.headers
    celery = is_celery_message(headers)  # a Celery message: the task's fields are headers
    body = headers if celery else _body_object(message.body)
    task = headers.get(HEADER_TASK) or message.properties.type or (body or {}).get("task")
    task_id = (headers.get(CELERY_HEADER_ID) if celery else None) or (
        message.properties.message_id or (body or {}).get("id") or message.properties.correlation_id
    )
    raw_retries = (body or {}).get("retries", 0)  # the envelope's default
    retries = raw_retries if isinstance(raw_retries, int) and body is not None else None
    common: dict[str, Any] = {
        "message": message,
        "task": _text(task),
        "task_id": _text(task_id),
        "retries": retries,
    }
    if HEADER_REASON in headers:
        return DeadLetter(
            source="amqpq",
            reason=_text(headers.get(HEADER_REASON)),
            error_type=_text(headers.get(HEADER_ERROR_TYPE)),
            error_message=_text(headers.get(HEADER_ERROR_MESSAGE)),
            queue=_text(headers.get(HEADER_ORIGINAL_QUEUE)),
            exchange=_text(headers.get(HEADER_ORIGINAL_EXCHANGE)),
            routing_key=_text(headers.get(HEADER_ORIGINAL_ROUTING_KEY)),
            died_at=_when(headers.get(HEADER_DEAD_AT)),
            **common,
        )
    entry = _death_entry(headers, work_queue)
    if entry is not None:
        keys = entry.get("routing-keys")
        routing_key = keys[0] if isinstance(keys, list) and keys else None
        count = entry.get("count")
        return DeadLetter(
            source="broker",
            reason=_text(entry.get("reason")),
            error_type=None,
            error_message=None,
            queue=_text(entry.get("queue")),
            exchange=_text(entry.get("exchange")),
            routing_key=_text(routing_key),
            died_at=_when(entry.get("time")),
            deaths=count if isinstance(count, int) else 1,
            **common,
        )
    return DeadLetter(
        source="unknown",
        reason=None,
        error_type=None,
        error_message=None,
        queue=None,
        exchange=None,
        routing_key=None,
        died_at=None,
        **common,
    )


# -- replaying ------------------------------------------------------------------------------


def _reset_retries(body: bytes) -> bytes:
    """The body with ``retries`` set to 0; any other body is left byte for byte."""
    value = _body_object(body)
    if value is None or not value.get("retries"):
        return body
    value["retries"] = 0
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def replay_message(
    letter: DeadLetter, work_queue: str, *, prefix: str = "amqpq", to_queue: bool = False
) -> OutgoingMessage:
    """The message that puts ``letter`` back where it came from.

    The original exchange and routing key, unless that exchange is amqpq's own
    plumbing (a delay level or the dead-letter exchange: a retried task passed
    through them, and without its delay headers they route nowhere) or
    ``to_queue`` is set: then straight to the original queue through the default
    exchange, so a fanout or topic exchange does not copy it into sibling queues.
    """
    queue = letter.queue or work_queue
    exchange, routing_key = letter.exchange, letter.routing_key
    internal = exchange is not None and (
        exchange.startswith(f"{prefix}.delay.") or exchange == dead_letter_exchange_name(prefix)
    )
    if to_queue or internal or exchange is None or routing_key is None:
        exchange, routing_key = "", queue
    headers = {
        k: v
        for k, v in fresh_headers(letter.message.properties.headers).items()
        if k not in DEAD_LETTER_HEADERS
    }
    celery = is_celery_message(headers)
    if celery and headers.get(CELERY_HEADER_RETRIES):
        headers[CELERY_HEADER_RETRIES] = 0  # a Celery message counts its retries in a header
    # A direct reply-to address names the channel of a caller that is gone by now (and on
    # RabbitMQ 3.10, a reply to one whose node left the cluster breaks the worker's reply
    # connection): a replayed task answers only a durable result queue, where a handle
    # can still read it.
    reply_to = letter.message.properties.reply_to
    properties = replace(
        letter.message.properties,
        headers=headers,
        delivery_mode=2,
        expiration=None,
        reply_to=None if reply_to and is_direct_reply_to(reply_to) else reply_to,
    )
    return OutgoingMessage(
        body=letter.message.body if celery else _reset_retries(letter.message.body),
        properties=properties,
        exchange=exchange,
        routing_key=routing_key,
        mandatory=True,
    )


@dataclass(frozen=True, slots=True)
class ReplayFailure:
    letter: DeadLetter
    error: PublishError


@dataclass(slots=True)
class ReplayResult:
    replayed: int = 0
    skipped: int = 0  # did not match the filters; left in place
    failures: list[ReplayFailure] = field(default_factory=list)


def _scan(session: QueueSession, queue: str) -> Iterator[GotMessage]:
    """The messages present when the scan starts, taken one by one and held unacked."""
    budget: int | None = None
    while budget is None or budget > 0:
        message = session.get(queue)
        if message is None:
            return
        # Only what was there when we started: replayed letters that die again
        # come back behind them and must not be replayed twice in one run.
        budget = message.remaining if budget is None else budget - 1
        yield message


def peek(session: QueueSession, dlq: DeadLetterQueue, limit: int) -> list[DeadLetter]:
    """The first ``limit`` dead letters, read and given back in their order (not consumed)."""
    letters: list[DeadLetter] = []
    try:
        for message in _scan(session, dlq.name):
            letters.append(describe(message, dlq.work_queue))
            if len(letters) >= limit:
                break
    finally:
        session.release()
    return letters


def replay(
    session: QueueSession,
    dlq: DeadLetterQueue,
    *,
    prefix: str = "amqpq",
    limit: int | None = None,
    task: str | None = None,
    task_id: str | None = None,
    to_queue: bool = False,
    on_replayed: Callable[[DeadLetter, OutgoingMessage], None] | None = None,
    on_failed: Callable[[ReplayFailure], None] | None = None,
) -> ReplayResult:
    """Replay the dead letters of ``dlq`` that match, one at a time, publish-confirm-then-ack.

    A letter whose route takes it nowhere stays in the dead-letter queue, in its
    place, and is reported in ``failures``; the others are still replayed.
    """
    result = ReplayResult()
    try:
        for message in _scan(session, dlq.name):
            if limit is not None and result.replayed >= limit:
                break
            letter = describe(message, dlq.work_queue)
            if (task is not None and letter.task != task) or (
                task_id is not None and letter.task_id != task_id
            ):
                result.skipped += 1
                continue
            outgoing = replay_message(letter, dlq.work_queue, prefix=prefix, to_queue=to_queue)
            try:
                session.publish(outgoing)
            except PublishError as exc:
                failure = ReplayFailure(letter, exc)
                result.failures.append(failure)
                if on_failed is not None:
                    on_failed(failure)
                continue
            session.ack(message)
            result.replayed += 1
            if on_replayed is not None:
                on_replayed(letter, outgoing)
    finally:
        session.release()  # what was skipped or failed goes back, in order
    return result


def purge(session: QueueSession, dlq: DeadLetterQueue) -> int:
    return session.purge(dlq.name)
