"""Exceptions a worker raises inside or about a running task."""

from __future__ import annotations

__all__ = ["SoftTimeLimitExceeded", "TimeLimitExceeded", "WorkerLostError"]


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task when its ``soft_time_limit`` passed: clean up and return or raise."""


class TimeLimitExceeded(Exception):
    """The task ran past its hard ``time_limit`` and was stopped (the child process killed)."""


class WorkerLostError(Exception):
    """The process running the task died; the message goes back to the queue."""
