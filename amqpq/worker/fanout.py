"""One call per task state change: stats, observers (events, metrics), hooks and logs.

The message handler says what happened (:meth:`TaskEvents.succeeded`, ...); this
module decides who hears about it, so each state change is counted, told to
the observers, handed to the hooks and logged in one place. Observer fields are
only built when there is an observer.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from amqpq.envelope import ErrorInfo, TaskEnvelope
from amqpq.registry import Request, Task
from amqpq.worker.hooks import Hooks
from amqpq.worker.stats import WorkerStats

__all__ = ["ARGUMENTS_KEPT_BYTES", "TaskEvent", "TaskEvents", "TaskObserver", "describe_envelope"]

log = logging.getLogger("amqpq.worker")


class TaskEvent(StrEnum):
    """The task state changes observers are told about (``task.<value>`` events)."""

    RECEIVED = "received"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    REJECTED = "rejected"
    REVOKED = "revoked"


class TaskObserver(Protocol):
    """Told about every task state change (events, metrics). Must not block or raise.

    ``state`` is a :class:`TaskEvent` value: received, started, succeeded, failed,
    retried, rejected, revoked.
    """

    def task_event(
        self, state: str, task: str, task_id: str, fields: Mapping[str, Any]
    ) -> None: ...


# What received events say about a task besides these: its arguments are shown below and
# every other envelope field that is one value (parent/root ids, a workflow's ids, eta...)
# is forwarded as is; structures (a chain's next tasks, a chord's body) are summed up by
# the workflow's shape instead.
_SHOWN_APART = frozenset({"protocol", "id", "task", "args", "kwargs", "shadow"})
_ONE_VALUE = (str, int, float, datetime)
# Arguments travel as they are (JSON values, so the dashboard can send a task again) when
# the message is this small; larger ones as a bounded repr.
ARGUMENTS_KEPT_BYTES = 8192
_TRACEBACK_LIMIT = 8000


def _bounded(value: Any) -> str:
    global _bounded_repr
    if _bounded_repr is None:
        from amqpq.events import bounded_repr  # imported when events are on, not at start

        _bounded_repr = bounded_repr
    return _bounded_repr(value)


_bounded_repr: Callable[[Any], str] | None = None


@functools.cache
def _forwarded(model: type[TaskEnvelope]) -> tuple[str, ...]:
    return tuple(name for name in model.model_fields if name not in _SHOWN_APART)


def describe_envelope(envelope: TaskEnvelope, size: int) -> dict[str, Any]:
    """The received event's fields: arguments (bounded) and the envelope's other fields."""
    fields: dict[str, Any] = {}
    if size <= ARGUMENTS_KEPT_BYTES:
        fields["args"] = envelope.args
        fields["kwargs"] = envelope.kwargs
    else:
        fields["args_repr"] = _bounded(envelope.args)
        fields["kwargs_repr"] = _bounded(envelope.kwargs)
    for name in _forwarded(type(envelope)):
        value = getattr(envelope, name)
        if value and isinstance(value, _ONE_VALUE):  # None, 0 retries: left out
            fields[name] = value
    return fields


def _rounded(runtime: float | None) -> float | None:
    return round(runtime, 6) if runtime is not None else None


def _shown(shadow: str | None) -> str:
    """`` shadow=NAME`` after ``task=`` in a log line when the caller named the call."""
    return f" shadow={shadow}" if shadow else ""


class TaskEvents:
    """The fan-out of one worker (or test broker): one method per state change."""

    __slots__ = ("_hooks", "observers", "stats")

    def __init__(
        self, stats: WorkerStats, hooks: Hooks, observers: Sequence[TaskObserver] = ()
    ) -> None:
        self.stats = stats
        self._hooks = hooks
        self.observers = tuple(observers)

    def _notify(
        self, state: TaskEvent, task: str, task_id: str, shadow: str | None = None, **fields: Any
    ) -> None:
        if shadow:  # only calls the sender named (apply_async(shadow=...)) carry the field
            fields["shadow"] = shadow
        for observer in self.observers:
            try:
                observer.task_event(state, task, task_id, fields)
            except Exception:
                log.debug("task observer %r failed", observer, exc_info=True)

    def delivered(self) -> None:
        """A delivery arrived (before it is even decoded)."""
        self.stats.received += 1

    def received(
        self,
        task: str,
        task_id: str,
        queue: str,
        shadow: str | None = None,
        workflow: Mapping[str, Any] | None = None,
        *,
        envelope: TaskEnvelope | None = None,
        size: int = 0,
    ) -> None:
        """``workflow``: where the task sits in its workflow (``amqpq.workflow.shape_of``);
        ``envelope`` and its message's ``size``: the event's arguments and other fields."""
        if self.observers:
            details = describe_envelope(envelope, size) if envelope is not None else {}
            if workflow:
                details.update(workflow)
            self._notify(TaskEvent.RECEIVED, task, task_id, queue=queue, shadow=shadow, **details)

    def started(self, task: str, task_id: str, queue: str, shadow: str | None = None) -> None:
        self.stats.active += 1
        if self.observers:
            self._notify(TaskEvent.STARTED, task, task_id, queue=queue, shadow=shadow)

    def ended(self) -> None:
        """The pool gave the task back (whatever its outcome)."""
        self.stats.active -= 1

    def succeeded(
        self,
        task: str,
        task_id: str,
        queue: str,
        runtime: float,
        shadow: str | None = None,
        result: Any = None,
    ) -> None:
        if self.observers:
            self._notify(
                TaskEvent.SUCCEEDED,
                task,
                task_id,
                queue=queue,
                runtime=round(runtime, 6),
                shadow=shadow,
                result=_bounded(result),
            )
        self.stats.succeeded += 1
        if shadow is None:  # the hot path: no formatting work when debug is off
            log.debug("task succeeded task=%s id=%s", task, task_id)
        else:
            log.debug("task succeeded task=%s%s id=%s", task, _shown(shadow), task_id)

    def retried(
        self,
        task: Task[Any, Any],
        task_id: str,
        queue: str,
        *,
        retries: int,
        countdown: float,
        error: ErrorInfo | None,
        request: Request,
    ) -> None:
        """A retry copy is published (``retries`` is the copy's count)."""
        self.stats.retried += 1
        if self.observers:
            self._notify(
                TaskEvent.RETRIED,
                task.name,
                task_id,
                queue=queue,
                retries=retries,
                countdown=countdown,
                error=error.type if error else None,
                message=error.message[:500] if error and error.message else None,
                shadow=request.shadow,
            )
        log.info(
            "task retry scheduled task=%s%s id=%s retries=%d countdown=%.3fs error=%s",
            task.name,
            _shown(request.shadow),
            task_id,
            retries,
            countdown,
            error.type if error else "-",
        )
        self._hooks("task_retry", request=request, task=task, countdown=countdown, error=error)

    def failed(
        self,
        task: str,
        task_id: str,
        queue: str,
        *,
        reason: str,
        error: ErrorInfo,
        runtime: float | None,
        shadow: str | None = None,
    ) -> None:
        """The task failed for good (``reason``: failed, max_retries_exceeded)."""
        self.stats.failed += 1
        self.stats.dead_lettered[reason] += 1
        if self.observers:
            self._notify(
                TaskEvent.FAILED,
                task,
                task_id,
                queue=queue,
                reason=reason,
                error=error.type,
                message=error.message[:500] if error.message else None,
                traceback=error.traceback[-_TRACEBACK_LIMIT:] if error.traceback else None,
                runtime=_rounded(runtime),
                shadow=shadow,
            )
        log.warning(
            "task failed task=%s%s id=%s reason=%s error=%s: %s",
            task,
            _shown(shadow),
            task_id,
            reason,
            error.type,
            error.message,
        )

    def rejected(
        self, task: str, task_id: str | None, queue: str, *, reason: str, message: str
    ) -> None:
        """Bad input, dead-lettered without running (``task`` is "-" when unknown)."""
        self.stats.dead_lettered[reason] += 1
        if self.observers:
            self._notify(
                TaskEvent.REJECTED,
                task,
                task_id or "-",
                queue=queue,
                reason=reason,
                error=message,
            )
        log.warning(
            "message rejected queue=%s id=%s task=%s reason=%s: %s",
            queue,
            task_id,
            task,
            reason,
            message,
        )

    def revoked(
        self,
        task: str,
        task_id: str,
        queue: str,
        *,
        terminated: bool,
        runtime: float | None,
        shadow: str | None = None,
    ) -> None:
        """Not run (revoked), or stopped while running (terminated); acked without a result."""
        self.stats.revoked += 1
        log.info(
            "task %s task=%s%s id=%s: acked without a result",
            "terminated" if terminated else "revoked",
            task,
            _shown(shadow),
            task_id,
        )
        if self.observers:
            self._notify(
                TaskEvent.REVOKED,
                task,
                task_id,
                queue=queue,
                terminated=terminated or None,
                runtime=_rounded(runtime),
                shadow=shadow,
            )

    def redelayed(self, task: str, task_id: str, seconds: float) -> None:
        self.stats.redelayed += 1
        log.debug("task re-delayed task=%s id=%s wait=%.3fs", task, task_id, seconds)

    def requeued(self) -> None:
        """Given back to its queue: shutdown, a crashed child, a republish that failed."""
        self.stats.requeued += 1

    def stale_ack(self) -> None:
        """An ack dropped because the channel closed under the task."""
        self.stats.stale_acks += 1
