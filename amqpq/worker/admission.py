"""Admission: whether a delivery may run, and with which task and arguments.

Checks in this order, each cheap before the next: body size, decoding (amqpq's envelope,
or a Celery protocol 2 message read as one by :mod:`amqpq.celery_wire`), revoked,
expiry, an eta still ahead, task lookup (:meth:`Admission.check`: the tasks a Celery
chain or callback names too), arguments
(:meth:`Admission.arguments`). The outcome is a job to run (the task and its
validated arguments), a :class:`Refusal` with its reason (the message is
dead-lettered), :data:`REVOKED` (acked without running) or a :class:`Redelay`
(sent back to the delay levels). A task with a rate limit then
waits its turn in :meth:`Admission.throttle`, before it takes an execution slot.
Nothing here publishes or acks: that is :mod:`amqpq.worker.outcomes`.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from amqpq.celery_canvas import task_names
from amqpq.celery_wire import (
    CeleryTaskEnvelope,
    Unsupported,
    is_celery_message,
    looks_like_celery_protocol_1,
    read_celery_task,
    serializer_of,
)
from amqpq.codec import CONTENT_TYPE, decode_task
from amqpq.envelope import PROTOCOL_VERSION, TaskEnvelope, TaskNode, TaskState
from amqpq.errors import ArgumentsError, DecodeError
from amqpq.registry import Task, TaskRegistry
from amqpq.transport.base import Delivery
from amqpq.wire import HEADER_PROTOCOL
from amqpq.worker.ratelimit import RateLimiter

__all__ = [
    "ETA_TOLERANCE",
    "REVOKED",
    "Admission",
    "Arguments",
    "Redelay",
    "Refusal",
    "RevokedIds",
]

# An eta this close is run now: re-delaying it would cost more than it saves.
ETA_TOLERANCE = timedelta(milliseconds=100)
_JSON_CONTENT_TYPES = (CONTENT_TYPE, None, "")
# Tasks with a Celery message's own time limits or ignore_result, by (name, those options).
_MAX_CALL_VARIANTS = 256

Arguments = tuple[list[Any], dict[str, Any]]
"""A task's validated positional and keyword arguments."""


class RevokedIds(Protocol):
    """The revoked task ids (``amqpq.revocations.Revocations``)."""

    @property
    def ready(self) -> bool: ...

    async def wait_ready(self) -> None: ...

    def __contains__(self, task_id: object) -> bool: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """Bad input: dead-lettered with ``reason``, the caller answered with ``state``."""

    reason: str  # too_large, bad_json, bad_envelope, expired, unknown_task, bad_arguments,
    # unsupported_serializer, unsupported_protocol, unsupported_workflow (Celery messages)
    error_type: str
    message: str
    state: TaskState = TaskState.REJECTED
    celery_caller: bool = False
    """Answer in Celery's rpc:// format though the headers do not say Celery (protocol 1)."""


@dataclass(frozen=True, slots=True)
class Redelay:
    """An eta still ahead: wait ``wait`` more on the broker (a delay cut short, a plain
    client)."""

    wait: timedelta


class _Revoked(enum.Enum):
    REVOKED = "revoked"


REVOKED: Final = _Revoked.REVOKED
"""The task id is revoked: acked without running, answered REVOKED."""


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Admission:
    """The checks of one worker; ``revoked`` and ``rate_limiter`` are optional."""

    def __init__(
        self,
        registry: TaskRegistry,
        *,
        max_body_size: int,
        delay_enabled: bool,
        revoked: RevokedIds | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self._registry = registry
        self._max_body_size = max_body_size
        self._delay_enabled = delay_enabled
        self.revoked = revoked
        self.rate_limiter = rate_limiter
        self._no_arguments: dict[str, bool] = {}  # task name -> callable without arguments
        self._call_variants: dict[tuple[str, float | None, float | None, bool], Task[Any, Any]] = {}

    def read(self, delivery: Delivery) -> TaskEnvelope | Refusal:
        """The envelope of a delivery, or why it cannot be read (size, JSON, schema)."""
        body = delivery.body
        if len(body) > self._max_body_size:
            return Refusal(
                "too_large",
                "MessageTooLarge",
                f"body of {len(body)} bytes is over the worker's limit of "
                f"{self._max_body_size} bytes",
            )
        if HEADER_PROTOCOL not in delivery.properties.headers:
            # Not from an amqpq producer: a Celery message, or a plain client's.
            foreign = self._read_foreign(delivery)
            if foreign is not None:
                return foreign
        # Fast path: pydantic parses the JSON itself. Anything unusual (no id in the body,
        # a newer protocol, not JSON at all) goes through decode_task for its error.
        if delivery.properties.content_type in _JSON_CONTENT_TYPES:
            try:
                envelope = TaskEnvelope.model_validate_json(body)
            except ValueError:
                pass
            else:
                if envelope.protocol <= PROTOCOL_VERSION:
                    return envelope
        try:
            return decode_task(body, delivery.properties)
        except DecodeError as exc:
            return _undecodable(exc)

    @staticmethod
    def _read_foreign(delivery: Delivery) -> TaskEnvelope | Refusal | None:
        """A Celery message read (or refused); None for anything else (a plain client)."""
        properties = delivery.properties
        if is_celery_message(properties.headers):
            try:
                read = read_celery_task(delivery.body, properties)
            except DecodeError as exc:
                return _undecodable(exc)
            if isinstance(read, Unsupported):
                return Refusal(read.reason, read.error_type, read.message)
            return read
        serializer = serializer_of(properties.content_type)
        if serializer is not None:  # Celery protocol 1 in pickle, say: refused unread
            return Refusal(
                "unsupported_serializer",
                "UnsupportedCeleryMessage",
                f"message serialized as {serializer} ({properties.content_type}); amqpq reads "
                "JSON only and never unpickles",
                celery_caller=True,  # only Celery (kombu) sends these content types
            )
        if properties.content_type in _JSON_CONTENT_TYPES and b'"taskset"' in delivery.body:
            try:
                raw = json.loads(delivery.body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                return None
            if isinstance(raw, dict) and looks_like_celery_protocol_1(raw):
                return Refusal(
                    "unsupported_protocol",
                    "UnsupportedCeleryMessage",
                    f"Celery task {raw.get('task')!r} id={raw.get('id')} uses Celery's message "
                    "protocol 1; amqpq reads protocol 2: set task_protocol = 2 (Celery's "
                    "default since 4.0)",
                    celery_caller=True,
                )
        return None

    def check(self, envelope: TaskEnvelope) -> Task[Any, Any] | Refusal | Redelay | _Revoked:
        """Revoked, expired, not due yet, unknown task, or the task to run.

        Call it once the revocations are read (``revoked.ready``).
        """
        revoked = self.revoked
        if revoked is not None and envelope.id in revoked:
            return REVOKED
        if envelope.eta is not None or envelope.expires is not None:
            now = datetime.now(UTC)
            if envelope.expires is not None and _utc(envelope.expires) <= now:
                return Refusal(
                    "expired",
                    "TaskExpiredError",
                    f"task expired at {_utc(envelope.expires).isoformat()}",
                    TaskState.EXPIRED,
                )
            if (
                envelope.eta is not None
                and self._delay_enabled
                and _utc(envelope.eta) - now > ETA_TOLERANCE
            ):
                return Redelay(_utc(envelope.eta) - now)
        task = self._registry.find(envelope.task)
        if task is None:
            return Refusal(
                "unknown_task",
                "TaskNotFoundError",
                f"no task named {envelope.task!r} is registered in this worker",
            )
        if isinstance(envelope, CeleryTaskEnvelope):
            if envelope.chain or envelope.link or envelope.link_error:
                unknown = self._unknown_in_workflow(envelope)
                if unknown is not None:
                    return unknown
            if envelope.time_limit or envelope.soft_time_limit or envelope.ignore_result:
                return self._celery_call(task, envelope)
        return task

    def _unknown_in_workflow(self, envelope: CeleryTaskEnvelope) -> Refusal | None:
        """A Celery chain or callback naming a task this worker does not register: refused
        before the first task runs, rather than stopping half-way."""
        fields = {
            "chain": [n for n in envelope.chain or () if isinstance(n, TaskNode)],
            "callbacks": envelope.link or [],
            "errbacks": envelope.link_error or [],
        }
        for field, nodes in fields.items():
            missing = sorted({n for n in task_names(nodes) if self._registry.find(n) is None})
            if missing:
                return Refusal(
                    "unsupported_workflow",
                    "UnsupportedCeleryMessage",
                    f"Celery task {envelope.task!r} id={envelope.id} carries embed.{field} "
                    f"naming {', '.join(repr(m) for m in missing)}, which no amqpq task "
                    "registers in this worker: dead-lettered rather than run half of it",
                )
        return None

    def _celery_call(self, task: Task[Any, Any], envelope: CeleryTaskEnvelope) -> Task[Any, Any]:
        """The task with a Celery message's own time limits (``timelimit``: they win over
        the task's, as in Celery) and ``ignore_result``; the pools read both from options."""
        key = (task.name, envelope.time_limit, envelope.soft_time_limit, envelope.ignore_result)
        variant = self._call_variants.get(key)
        if variant is None:
            options = task.options
            variant = copy.copy(task)
            variant.options = dataclasses.replace(
                options,
                time_limit=envelope.time_limit or options.time_limit,
                soft_time_limit=envelope.soft_time_limit or options.soft_time_limit,
                ignore_result=envelope.ignore_result or options.ignore_result,
            )
            if len(self._call_variants) >= _MAX_CALL_VARIANTS:
                self._call_variants.clear()
            self._call_variants[key] = variant
        return variant

    def arguments(self, task: Task[Any, Any], envelope: TaskEnvelope) -> Arguments | Refusal:
        """The envelope's arguments validated against the task's signature."""
        try:
            if envelope.args or envelope.kwargs or not self._takes_no_arguments(task):
                return task.parameters.from_wire(envelope.args, envelope.kwargs)
        except ArgumentsError as exc:
            return Refusal("bad_arguments", "ArgumentsError", str(exc))
        return [], {}

    def _takes_no_arguments(self, task: Task[Any, Any]) -> bool:
        known = self._no_arguments.get(task.name)
        if known is None:
            try:
                task.parameters.signature.bind()
            except TypeError:
                known = False
            else:
                known = True
            self._no_arguments[task.name] = known
        return known

    async def throttle(self, task: Task[Any, Any], task_id: str) -> bool:
        """Wait for the rate limit of a task that has one (with a ``rate_limiter``); False
        when it was revoked meanwhile.

        Waits before taking an execution slot: only this message's prefetch is held.
        """
        rate = task.options.rate_per_second
        assert rate is not None
        assert self.rate_limiter is not None
        await self.rate_limiter.wait(task.name, rate)
        return self.revoked is None or task_id not in self.revoked


def _undecodable(exc: DecodeError) -> Refusal:
    """A body that is not JSON (``bad_json``) or not a task envelope (``bad_envelope``)."""
    cause = exc.__cause__
    reason = (
        "bad_json"
        if isinstance(cause, UnicodeDecodeError | json.JSONDecodeError)
        else "bad_envelope"
    )
    return Refusal(reason, "DecodeError", str(exc))
