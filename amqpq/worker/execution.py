"""Running one task where it runs (a thread, the event loop, a child process).

Everything here is free of the broker: it takes validated arguments and a
:class:`~amqpq.registry.Request`, calls the function and returns an
:class:`Outcome` that is plain JSON (so a child process can send it back over a
pipe). Deciding what to publish and when to ack is the consumer's job.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NoReturn

from amqpq.envelope import ErrorInfo
from amqpq.registry import Request, Retry, Task, TaskOptions
from amqpq.worker.hooks import Hooks
from amqpq.worker.limits import SoftTimeLimitExceeded, TimeLimitExceeded

__all__ = [
    "Outcome",
    "ProgressFn",
    "RetryRequest",
    "Status",
    "WorkerTaskContext",
    "call_async_task",
    "call_sync_task",
    "error_info",
    "request_from_json",
    "request_to_json",
    "retry_countdown",
]

ProgressFn = Callable[[str, dict[str, Any] | None], None]


class Status(StrEnum):
    """How a task's run ended, as a pool reports it (the child sends the value)."""

    SUCCESS = "success"
    FAILURE = "failure"
    RETRY = "retry"
    CRASHED = "crashed"
    """The process running it died (processes pool): requeued, not failed."""


# Read once: an enum member read through its class is a descriptor call, on every task.
_SUCCESS = Status.SUCCESS

_MAX_TRACEBACK = 16_000


@dataclass(frozen=True, slots=True)
class RetryRequest:
    """What ``self.retry()`` or ``autoretry_for`` asked for."""

    countdown: float | None = None
    eta: datetime | None = None
    max_retries: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "countdown": self.countdown,
            "eta": self.eta.isoformat() if self.eta else None,
            "max_retries": self.max_retries,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetryRequest:
        eta = data.get("eta")
        return cls(
            countdown=data.get("countdown"),
            eta=datetime.fromisoformat(eta) if eta else None,
            max_retries=data.get("max_retries"),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a task ended: ``result`` is already JSON (``TaskParameters.result_to_wire``)."""

    status: Status
    result: Any = None
    error: ErrorInfo | None = None
    retry: RetryRequest | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "result": self.result,
            "error": self.error.model_dump() if self.error else None,
            "retry": self.retry.to_json() if self.retry else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        error = data.get("error")
        retry = data.get("retry")
        return cls(
            status=Status(data["status"]),
            result=data.get("result"),
            error=ErrorInfo.model_validate(error) if error else None,
            retry=RetryRequest.from_json(retry) if retry else None,
        )


def error_info(exc: BaseException, *, with_traceback: bool = True) -> ErrorInfo:
    """An exception as it crosses the wire: type, message, traceback (trimmed)."""
    text = None
    if with_traceback:
        text = "".join(traceback.format_exception(exc))
        if len(text) > _MAX_TRACEBACK:
            text = "...\n" + text[-_MAX_TRACEBACK:]
    return ErrorInfo(type=type(exc).__name__, message=str(exc), traceback=text)


class WorkerTaskContext:
    """``self`` of a ``bind=True`` task (implements :class:`amqpq.registry.TaskContext`)."""

    __slots__ = ("_progress", "name", "options", "request")

    def __init__(self, task: Task[Any, Any], request: Request, progress: ProgressFn) -> None:
        self.request = request
        self.name = task.name
        self.options: TaskOptions = task.options
        self._progress = progress

    @property
    def max_retries(self) -> int | None:
        return self.options.max_retries

    def retry(
        self,
        *,
        countdown: float | None = None,
        exc: BaseException | None = None,
        max_retries: int | None = None,
        eta: datetime | None = None,
    ) -> NoReturn:
        # Raises, as Celery's does: a bare ``self.retry(countdown=1)`` must not let the
        # task go on (``raise self.retry(...)`` still works: the raise is never reached).
        raise Retry(countdown=countdown, exc=exc, max_retries=max_retries, eta=eta)

    def update_state(self, state: str = "PROGRESS", meta: Mapping[str, Any] | None = None) -> None:
        self._progress(state, dict(meta) if meta is not None else None)


def _args_for(
    task: Task[Any, Any], request: Request | None, args: list[Any], progress: ProgressFn
) -> list[Any]:
    if task.options.bind:
        assert request is not None
        return [WorkerTaskContext(task, request, progress), *args]
    return args


def _outcome_for_exception(task: Task[Any, Any], exc: BaseException) -> Outcome:
    if isinstance(exc, Retry):
        cause = exc.exc
        return Outcome(
            status=Status.RETRY,
            error=error_info(cause) if cause is not None else None,
            retry=RetryRequest(countdown=exc.countdown, eta=exc.eta, max_retries=exc.max_retries),
        )
    if task.options.autoretry_for and isinstance(exc, task.options.autoretry_for):
        return Outcome(status=Status.RETRY, error=error_info(exc), retry=RetryRequest())
    return Outcome(status=Status.FAILURE, error=error_info(exc))


def call_sync_task(
    task: Task[Any, Any],
    args: list[Any],
    kwargs: dict[str, Any],
    request: Request | None,
    progress: ProgressFn,
    hooks: Hooks | None = None,
) -> Outcome:
    """Call a synchronous task and turn whatever happens into an :class:`Outcome`.

    ``request`` may be None when the task is not bound and there are no hooks.
    """
    if hooks is not None and hooks.task_prerun:
        hooks("task_prerun", request=request, task=task)
    try:
        value = task.func(*_args_for(task, request, args, progress), **kwargs)
        outcome = Outcome(status=_SUCCESS, result=task.parameters.result_to_wire(value))
        if hooks is not None and hooks.task_success:
            hooks("task_success", request=request, task=task, result=outcome.result)
    except (SoftTimeLimitExceeded, TimeLimitExceeded) as exc:
        outcome = Outcome(status=Status.FAILURE, error=error_info(exc))
        _failure_hook(hooks, request, task, exc)
    except Exception as exc:
        outcome = _outcome_for_exception(task, exc)
        if outcome.status is Status.FAILURE:
            _failure_hook(hooks, request, task, exc)
    if hooks is not None and hooks.task_postrun:
        hooks(
            "task_postrun", request=request, task=task, state=outcome.status, result=outcome.result
        )
    return outcome


async def call_async_task(
    task: Task[Any, Any],
    args: list[Any],
    kwargs: dict[str, Any],
    request: Request | None,
    progress: ProgressFn,
    hooks: Hooks | None = None,
) -> Outcome:
    """Await an ``async def`` task on the running loop; ``time_limit`` cancels it."""
    if hooks is not None and hooks.task_prerun:
        hooks("task_prerun", request=request, task=task)
    limit = _limit(task.options)
    try:
        coroutine = task.func(*_args_for(task, request, args, progress), **kwargs)
        value = await (asyncio.wait_for(coroutine, limit) if limit else coroutine)
        outcome = Outcome(status=_SUCCESS, result=task.parameters.result_to_wire(value))
        if hooks is not None and hooks.task_success:
            hooks("task_success", request=request, task=task, result=outcome.result)
    except TimeoutError as exc:
        if limit is None:
            outcome = _outcome_for_exception(task, exc)
        else:
            limit_exc = TimeLimitExceeded(f"task {task.name} ran longer than {limit}s")
            outcome = Outcome(
                status=Status.FAILURE, error=error_info(limit_exc, with_traceback=False)
            )
            _failure_hook(hooks, request, task, limit_exc)
    except Exception as exc:
        outcome = _outcome_for_exception(task, exc)
        if outcome.status is Status.FAILURE:
            _failure_hook(hooks, request, task, exc)
    if hooks is not None and hooks.task_postrun:
        hooks(
            "task_postrun", request=request, task=task, state=outcome.status, result=outcome.result
        )
    return outcome


def _limit(options: TaskOptions) -> float | None:
    limits = [x for x in (options.soft_time_limit, options.time_limit) if x]
    return min(limits) if limits else None


def _failure_hook(
    hooks: Hooks | None, request: Request | None, task: Task[Any, Any], exc: BaseException
) -> None:
    if hooks is not None and hooks.task_failure:
        hooks("task_failure", request=request, task=task, exception=exc)


def retry_countdown(options: TaskOptions, retry: RetryRequest, retries: int) -> float:
    """Seconds until the next attempt (``retries`` = attempts already retried).

    An explicit countdown or eta wins; else ``retry_backoff`` doubles from its factor
    (``True`` = 1 s) each retry up to ``retry_backoff_max``, with full jitter when
    ``retry_jitter``; else ``default_retry_delay``.
    """
    if retry.eta is not None:
        eta = retry.eta if retry.eta.tzinfo else retry.eta.replace(tzinfo=UTC)
        return max(0.0, (eta - datetime.now(UTC)).total_seconds())
    if retry.countdown is not None:
        return max(0.0, float(retry.countdown))
    backoff = options.retry_backoff
    if backoff:
        factor = 1.0 if backoff is True else float(backoff)
        delay: float = min(factor * float(2**retries), options.retry_backoff_max)
        if options.retry_jitter:
            delay = random.uniform(delay / 2, delay)  # keep at least half: no thundering herd at 0
        return delay
    return max(0.0, options.default_retry_delay)


_REQUEST_DATES = ("eta", "expires")


def request_to_json(request: Request) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in fields(request):
        value = getattr(request, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        data[f.name] = value
    return data


def request_from_json(data: Mapping[str, Any]) -> Request:
    values = dict(data)
    for name in _REQUEST_DATES:
        if values.get(name):
            values[name] = datetime.fromisoformat(values[name])
    values["args"] = tuple(values.get("args") or ())
    return Request(**values)
