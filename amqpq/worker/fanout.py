"""One call per task state change: stats, observers (events, metrics), hooks and logs.

The message handler says what happened (:meth:`TaskEvents.succeeded`, ...); this
module decides who hears about it, so each state change is counted, told to
the observers, handed to the hooks and logged in one place. Observer fields are
only built when there is an observer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol

from amqpq.envelope import ErrorInfo
from amqpq.registry import Request, Task
from amqpq.worker.hooks import Hooks
from amqpq.worker.stats import WorkerStats

__all__ = ["TaskEvent", "TaskEvents", "TaskObserver"]

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
    ) -> None:
        """``workflow``: where the task sits in its workflow (``amqpq.workflow.shape_of``)."""
        if self.observers:
            self._notify(
                TaskEvent.RECEIVED, task, task_id, queue=queue, shadow=shadow, **(workflow or {})
            )

    def started(self, task: str, task_id: str, queue: str, shadow: str | None = None) -> None:
        self.stats.active += 1
        if self.observers:
            self._notify(TaskEvent.STARTED, task, task_id, queue=queue, shadow=shadow)

    def ended(self) -> None:
        """The pool gave the task back (whatever its outcome)."""
        self.stats.active -= 1

    def succeeded(
        self, task: str, task_id: str, queue: str, runtime: float, shadow: str | None = None
    ) -> None:
        if self.observers:
            self._notify(
                TaskEvent.SUCCEEDED,
                task,
                task_id,
                queue=queue,
                runtime=round(runtime, 6),
                shadow=shadow,
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
