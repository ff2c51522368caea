"""Tasks: the decorated functions, their options and their typed signatures.

Arguments are validated from the function's type hints with pydantic: at send
time when the producer knows the task, and always at the worker. On the wire
they are plain JSON (``mode="json"``), so a ``datetime`` travels as ISO text
and comes back a ``datetime`` inside the task.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    NoReturn,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    get_type_hints,
)

from pydantic import TypeAdapter, ValidationError

from amqpq.canvas import Chunks, Signature
from amqpq.errors import ArgumentsError, ConfigError, TaskNotFoundError
from amqpq.wire import MAP_TASK, STARMAP_TASK
from amqpq.workflow import TaskCall

if TYPE_CHECKING:
    from amqpq.rpc import AsyncResult

__all__ = [
    "AsyncSendsTasks",
    "Request",
    "Retry",
    "SendsTasks",
    "Task",
    "TaskContext",
    "TaskOptions",
    "TaskParameters",
    "TaskRegistry",
    "TaskSender",
    "parse_rate_limit",
]

P = ParamSpec("P")
R = TypeVar("R")

_ANY_ADAPTER: TypeAdapter[Any] = TypeAdapter(Any)


class Retry(Exception):
    """Raised by ``self.retry()`` inside a bound task: run me again later."""

    def __init__(
        self,
        countdown: float | None = None,
        exc: BaseException | None = None,
        max_retries: int | None = None,
        eta: datetime | None = None,
    ) -> None:
        self.countdown = countdown
        self.exc = exc
        self.max_retries = max_retries
        self.eta = eta
        super().__init__(f"retry in {countdown}s" if countdown is not None else "retry")


@dataclass(frozen=True, slots=True)
class Request:
    """What a running task knows about its message (``self.request`` in a bound task)."""

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    parent_id: str | None = None
    root_id: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    redelivered: bool = False
    hostname: str | None = None
    shadow: str | None = None
    """The display name the caller gave this call (``apply_async(shadow=...)``), else None."""
    group_id: str | None = None
    """In a workflow: the group or chord whose member this task is (docs/workflows.md)."""
    group_index: int | None = None
    chord_id: str | None = None


class TaskContext(Protocol):
    """The first argument of a ``bind=True`` task, provided by the worker."""

    request: Request
    name: str

    def retry(
        self,
        *,
        countdown: float | None = None,
        exc: BaseException | None = None,
        max_retries: int | None = None,
        eta: datetime | None = None,
    ) -> NoReturn:
        """Raise :class:`Retry`: run the task again later (``self.retry(countdown=5)``).

        As in Celery it raises by itself, so ``raise self.retry(countdown=5)`` works too.
        """
        ...

    def update_state(self, state: str = "PROGRESS", meta: Mapping[str, Any] | None = None) -> None:
        """Report progress to the caller (``AsyncResult.state`` / ``.info``)."""
        ...


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min|h|hour))?\s*$")
_RATE_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


def parse_rate_limit(value: str | None) -> float | None:
    """``"10/s"``, ``"100/m"``, ``"1000/h"`` -> tasks per second (None: unlimited)."""
    if value is None:
        return None
    match = _RATE.match(value)
    if not match:
        raise ConfigError(f"rate limit {value!r}: expected a number per s, m or h, e.g. '10/s'")
    amount = float(match.group(1))
    if amount <= 0:
        raise ConfigError(f"rate limit {value!r}: must be positive")
    return amount / _RATE_UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task behaviour; ``apply_async`` may override the sending ones per call."""

    name: str
    queue: str | None = None
    max_retries: int | None = 3
    autoretry_for: tuple[type[BaseException], ...] = ()
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    default_retry_delay: float = 3.0
    soft_time_limit: float | None = None
    time_limit: float | None = None
    rate_limit: str | None = None
    acks_late: bool = True
    ignore_result: bool = False
    bind: bool = False
    track_started: bool = False
    priority: int | None = None
    expires: float | None = None
    result_expires: float | None = None
    """Seconds a result store keeps this task's results (None: the App's ``result_expires``)."""

    def __post_init__(self) -> None:
        parse_rate_limit(self.rate_limit)
        if self.result_expires is not None and self.result_expires <= 0:
            raise ConfigError(f"task {self.name}: result_expires must be positive")
        if self.max_retries is not None and self.max_retries < 0:
            raise ConfigError(f"task {self.name}: max_retries must be >= 0")
        for limit in (self.soft_time_limit, self.time_limit):
            if limit is not None and limit <= 0:
                raise ConfigError(f"task {self.name}: time limits must be positive")

    @property
    def rate_per_second(self) -> float | None:
        return parse_rate_limit(self.rate_limit)


class TaskParameters:
    """A task function's parameters as pydantic validators."""

    def __init__(self, func: Callable[..., Any], *, bind: bool = False) -> None:
        self.name = getattr(func, "__qualname__", repr(func))
        signature = inspect.signature(func)
        try:
            hints = get_type_hints(func)
        except Exception:  # unresolvable forward references: fall back to no validation
            hints = {}
        params = list(signature.parameters.values())
        if bind:
            if not params:
                raise ConfigError(f"task {self.name}: bind=True needs a first parameter (self)")
            params = params[1:]
        self.signature = signature.replace(parameters=params)
        self.adapters: dict[str, TypeAdapter[Any]] = {
            p.name: TypeAdapter(hints[p.name]) if p.name in hints else _ANY_ADAPTER for p in params
        }
        self.kinds = {p.name: p.kind for p in params}
        # Worked out once, not on every call.
        self._positional = [
            p.name
            for p in params
            if p.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        self._var_pos = next(
            (p.name for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None
        )
        self._var_kw = next(
            (p.name for p in params if p.kind is inspect.Parameter.VAR_KEYWORD), None
        )
        required_keyword = any(
            p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
            for p in params
        )
        # A call with exactly one positional value per positional parameter and no keyword
        # arguments always binds: inspect's binding (for its error message) is skipped then.
        self._plain_arity = None if required_keyword else len(self._positional)
        self.result: TypeAdapter[Any] = (
            TypeAdapter(hints["return"])
            if "return" in hints and hints["return"] is not type(None)
            else _ANY_ADAPTER
        )

    def _convert(
        self, args: Iterable[Any], kwargs: Mapping[str, Any], *, to_json: bool
    ) -> tuple[list[Any], dict[str, Any]]:
        args = list(args)
        kwargs = dict(kwargs)
        if kwargs or len(args) != self._plain_arity:
            try:
                self.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise ArgumentsError(f"{self.name}: {exc}") from exc
        errors: list[str] = []

        def convert(param: str, value: Any, where: str) -> Any:
            adapter = self.adapters[param]
            try:
                validated = adapter.validate_python(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(x) for x in first["loc"])
                errors.append(
                    f"{where}{'.' + loc if loc else ''}: {first['msg']} (got {value!r:.60})"
                )
                return value
            return adapter.dump_python(validated, mode="json") if to_json else validated

        # Keep the caller's split between positional and keyword arguments.
        out_args: list[Any] = []
        positional, var_pos, var_kw = self._positional, self._var_pos, self._var_kw
        for index, value in enumerate(args):
            param = positional[index] if index < len(positional) else var_pos
            assert param is not None  # bind() has already refused extra positionals
            out_args.append(
                convert(param, value, param if param != var_pos else f"{param}[{index}]")
            )
        out_kwargs: dict[str, Any] = {}
        for key, value in kwargs.items():
            param = key if key in self.kinds and key != var_kw and key != var_pos else var_kw
            assert param is not None
            out_kwargs[key] = convert(param, value, key)
        if errors:
            raise ArgumentsError(f"{self.name}: invalid arguments: " + "; ".join(errors))
        return out_args, out_kwargs

    def to_wire(
        self, args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Validate and turn into JSON-able values (producer side)."""
        return self._convert(args, kwargs, to_json=True)

    def from_wire(
        self, args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Validate JSON values into the annotated types (worker side)."""
        return self._convert(args, kwargs, to_json=False)

    def result_to_wire(self, value: Any) -> Any:
        try:
            return self.result.dump_python(value, mode="json")
        except Exception:  # a result the hint does not describe: fall back to plain JSON
            return _ANY_ADAPTER.dump_python(value, mode="json")

    def result_from_wire(self, value: Any) -> Any:
        try:
            return self.result.validate_python(value)
        except ValidationError:
            return value


class SendsTasks(Protocol):
    """What a Task sends through: a producer (``amqpq.producer.Producer``)."""

    def send_task(
        self, name: str, args: Any = ..., kwargs: Any = ..., **options: Any
    ) -> AsyncResult: ...

    def send_workflow(
        self, calls: Sequence[TaskCall], expected: Sequence[tuple[str, str]] = ...
    ) -> dict[str, AsyncResult]: ...


class AsyncSendsTasks(Protocol):
    """What a Task sends through from asyncio code (``amqpq.producer.AsyncProducer``)."""

    async def send_task(
        self, name: str, args: Any = ..., kwargs: Any = ..., **options: Any
    ) -> AsyncResult: ...

    async def send_workflow(
        self, calls: Sequence[TaskCall], expected: Sequence[tuple[str, str]] = ...
    ) -> dict[str, AsyncResult]: ...


@dataclass(frozen=True, slots=True)
class TaskSender:
    """How a Task finds the producers to send with, handed to it by its App.

    Callables, not producers: the App's producer is created on first use, per
    process, per event loop, and swapped by :class:`amqpq.testing.TestBroker`.
    """

    producer: Callable[[], SendsTasks]
    aproducer: Callable[[], AsyncSendsTasks]


class Task(Generic[P, R]):
    """A registered task. Calling it runs the function here; ``delay`` sends it to a worker."""

    def __init__(self, func: Callable[P, R], options: TaskOptions, sender: TaskSender) -> None:
        self.func = func
        self.options = options
        self.name = options.name
        self.parameters = TaskParameters(func, bind=options.bind)
        self.is_async = inspect.iscoroutinefunction(func)
        self._sender = sender
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", options.name)
        self.__wrapped__ = func

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Send with default options: ``add.delay(3, 4).get(timeout=10)``."""
        return self._sender.producer().send_task(self.name, args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send with options: countdown, eta, expires, priority, task_id, routing_key,
        exchange, headers, result_queue, ignore_result, shadow (a display name for this
        call in the worker's logs, events and ``amqpq inspect``)."""
        return self._sender.producer().send_task(self.name, args, kwargs, **options)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """``delay`` for asyncio code (FastAPI handlers): ``await add.adelay(3, 4)``."""
        return await self._sender.aproducer().send_task(self.name, args, kwargs)

    async def aapply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        return await self._sender.aproducer().send_task(self.name, args, kwargs, **options)

    # -- workflows (amqpq.canvas, docs/workflows.md) -------------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of this task: ``add.s(2, 2)``; in a chain it receives the parent's
        result as its first argument (``add.s(4)`` after ``add.s(2, 2)`` runs ``add(4, 4)``)."""
        return Signature(self.name, args, kwargs, senders=self._sender)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: the parent's result is not prepended."""
        return Signature(self.name, args, kwargs, immutable=True, senders=self._sender)

    def signature(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """``add.signature((2, 2), countdown=10)``: a signature with send options."""
        immutable = bool(options.pop("immutable", False))
        return Signature(
            self.name, args, kwargs, options, immutable=immutable, senders=self._sender
        )

    def map(self, items: Iterable[Any]) -> Signature:
        """One task that calls this one for each item, in order: ``add_one.map([1, 2])``."""
        return Signature(MAP_TASK, [self.name, list(items)], senders=self._sender)

    def starmap(self, items: Iterable[Iterable[Any]]) -> Signature:
        """One task that calls this one with each argument list: ``add.starmap([(1, 2)])``."""
        return Signature(STARMAP_TASK, [self.name, [list(i) for i in items]], senders=self._sender)

    def chunks(self, items: Iterable[Iterable[Any]], size: int) -> Chunks:
        """The argument lists in tasks of ``size`` calls each (a group of starmaps)."""
        return Chunks(self.name, items, size, self._sender)


class TaskRegistry:
    """Tasks by name."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._builtin: set[str] = set()

    def add_builtin(self, task: Task[Any, Any]) -> None:
        """amqpq's own tasks (``amqpq.map``...): found by name, left out of :meth:`names`."""
        self._tasks[task.name] = task
        self._builtin.add(task.name)

    def add(self, task: Task[Any, Any]) -> None:
        existing = self._tasks.get(task.name)
        if existing is not None and existing.func is not task.func:
            raise ConfigError(f"two tasks are named {task.name!r}: give one an explicit name=")
        self._tasks[task.name] = task

    def get(self, name: str) -> Task[Any, Any]:
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotFoundError(f"no task named {name!r} is registered") from None

    def find(self, name: str) -> Task[Any, Any] | None:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        """The App's tasks (amqpq's own left out)."""
        return sorted(n for n in self._tasks if n not in self._builtin)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks) - len(self._builtin)


def task_name_for(func: Callable[..., Any], app_main: str | None) -> str:
    """``module.function``; a task defined in ``__main__`` takes the App's name as module."""
    module = getattr(func, "__module__", None) or "__main__"
    if module == "__main__" and app_main:
        module = app_main
    return f"{module}.{cast(str, getattr(func, '__name__', 'task'))}"
