"""Workflows: signatures, ``chain``, ``group``, ``chord`` (Celery's canvas, on RabbitMQ alone).

::

    from amqpq import chain, chord, group

    chain(add.s(2, 2), add.s(4), mul.s(10)).apply_async().get(timeout=10)   # 80
    group(add.s(i, i) for i in range(10)).apply_async().get(timeout=10)     # [0, 2, ..., 18]
    chord((add.s(i, i) for i in range(10)), tsum.s()).apply_async().get(timeout=10)  # 90

A signature is a task name with arguments and send options, JSON all through, so
it travels in messages: the caller sends the first task(s) of a workflow, and each
worker sends what follows (:mod:`amqpq.workflow` plans both). Every task of the
workflow has its id before anything is sent, so the handles returned here wait for
replies on the caller's direct reply-to, with no result store. docs/workflows.md has
the whole picture, the join of a chord and its failure analysis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import TypeAdapter, ValidationError

from amqpq.envelope import ChainNode, ChordNode, GroupNode, Node, TaskNode
from amqpq.errors import ConfigError
from amqpq.wire import STARMAP_TASK
from amqpq.workflow import TaskCall, freeze, launch, task_ids

if TYPE_CHECKING:  # rpc is loaded with the first result, not with the tasks
    from amqpq.rpc import AsyncResult

__all__ = [
    "SIGNATURE_OPTIONS",
    "AsyncWorkflowSender",
    "Chunks",
    "GroupResult",
    "HasSenders",
    "Signature",
    "Workflow",
    "WorkflowSender",
    "WorkflowSenders",
    "chain",
    "chord",
    "group",
    "signature",
    "use_default_senders",
]

SIGNATURE_OPTIONS = frozenset(
    {
        "countdown",
        "eta",
        "exchange",
        "expires",
        "headers",
        "ignore_result",
        "priority",
        "queue",
        "result_expires",
        "routing_key",
        "shadow",
        "task_id",
    }
)
"""What ``.set()`` accepts: the send options that may travel in a workflow's messages."""

_JSON: TypeAdapter[Any] = TypeAdapter(Any)


class WorkflowSender(Protocol):
    """What a workflow is sent through (``amqpq.producer.Producer``)."""

    def send_workflow(
        self, calls: Sequence[TaskCall], expected: Sequence[tuple[str, str]] = ...
    ) -> dict[str, AsyncResult]: ...


class AsyncWorkflowSender(Protocol):
    """:class:`WorkflowSender` for asyncio code (``amqpq.producer.AsyncProducer``)."""

    async def send_workflow(
        self, calls: Sequence[TaskCall], expected: Sequence[tuple[str, str]] = ...
    ) -> dict[str, AsyncResult]: ...


class WorkflowSenders(Protocol):
    """Where a signature finds its producers: its task's ``TaskSender``, or an App's."""

    @property
    def producer(self) -> Callable[[], WorkflowSender]: ...

    @property
    def aproducer(self) -> Callable[[], AsyncWorkflowSender]: ...


class HasSenders(Protocol):
    """An App, as ``signature(..., app=app)`` uses it."""

    @property
    def senders(self) -> WorkflowSenders: ...


_default_senders: list[WorkflowSenders] = []


def use_default_senders(senders: WorkflowSenders) -> None:
    """How signatures made by name without an App send (``amqpq.app`` sets: the current
    App, as ``@shared_task`` tasks do)."""
    _default_senders[:] = [senders]


def _json(value: Any, what: str) -> Any:
    try:
        return _JSON.dump_python(value, mode="json")
    except Exception as exc:
        raise ConfigError(f"{what} must be JSON-serialisable: {exc}") from exc


def _option_value(key: str, value: Any) -> Any:
    """Options travel in messages: dates as ISO text, durations as seconds."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return _json(value, f"option {key}")


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(options) - SIGNATURE_OPTIONS
    if unknown:
        raise ConfigError(
            f"unknown signature option(s) {', '.join(sorted(unknown))}; "
            f"expected: {', '.join(sorted(SIGNATURE_OPTIONS))}"
        )
    return {k: _option_value(k, v) for k, v in options.items() if v is not None}


class Workflow:
    """What signatures, chains, groups and chords share: composing and sending."""

    _senders: WorkflowSenders | None = None

    def to_node(self) -> Node:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The workflow as JSON-able data (docs/protocol.md, "Workflows")."""
        node = self.to_node()
        return node.model_dump(mode="json", exclude_defaults=True) | {"kind": node.kind}

    def __or__(self, other: Workflow) -> Workflow:
        if not isinstance(other, Workflow):
            return NotImplemented
        return chain(self, other)

    def senders(self) -> WorkflowSenders:
        found = self._senders or _find_senders(self._members())
        if found is None:
            if _default_senders:
                return _default_senders[0]
            raise ConfigError(
                "this workflow names no task of an App: create an App first, or make the "
                "signature with app.signature(...)"
            )
        return found

    def _members(self) -> Iterable[Workflow]:
        return ()

    # -- sending ------------------------------------------------------------------------------

    def apply_async(
        self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """Send it: the first task(s) now, the rest by the workers as results come.

        ``args``/``kwargs`` are added to the first task(s) (prepended, as Celery's partial
        arguments); ``options`` apply to every task that does not set them itself, but
        ``task_id`` names the workflow's result (a chain's last task, a chord's body).
        Returns an :class:`AsyncResult` (a :class:`GroupResult` for a group).
        """
        node, calls, expected = self._plan(args, kwargs, options)
        found = self.senders().producer().send_workflow(calls, expected)
        return _result_for(node, found, None)

    async def aapply_async(
        self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """:meth:`apply_async` for asyncio code."""
        node, calls, expected = self._plan(args, kwargs, options)
        found = await self.senders().aproducer().send_workflow(calls, expected)
        return _result_for(node, found, None)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: Any, **kwargs: Any) -> Any:
        return await self.aapply_async(args, kwargs)

    def _plan(
        self, args: Iterable[Any], kwargs: Mapping[str, Any] | None, options: Mapping[str, Any]
    ) -> tuple[Node, list[TaskCall], list[tuple[str, str]]]:
        options = dict(options)
        task_id = options.pop("task_id", None)
        checked = _check_options(options)
        node = _partial(self.to_node(), list(_json(list(args), "args")), kwargs or {})
        node = _with_options(node, checked)
        if task_id is not None:
            node = _with_final_id(node, str(task_id))
        node = freeze(node)
        calls = launch(node, common={"root_id": task_ids(node)[0]} if task_ids(node) else {})
        if not calls:
            raise ConfigError("an empty workflow has nothing to send")
        if checked.get("ignore_result"):
            return node, calls, []
        sent = {c.options.get("task_id") for c in calls}
        expected = [(i, name) for i, name in _tasks_of(node) if i not in sent]
        return node, calls, expected


class Signature(Workflow):
    """A task with arguments and send options: ``add.s(2, 2)``, ``signature("tasks.add")``.

    Its arguments and options are JSON (they travel in messages); ``to_dict()`` gives
    it as data, ``signature(data)`` makes it again.
    """

    def __init__(
        self,
        task: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        immutable: bool = False,
        senders: WorkflowSenders | None = None,
    ) -> None:
        if not isinstance(task, str) or not 0 < len(task) <= 255:
            raise ConfigError(f"a signature names a task (1 to 255 characters), got {task!r}")
        if isinstance(args, str | bytes | Mapping):
            raise ConfigError(f"{task}: args must be a list or tuple, got {type(args).__name__}")
        self.task = task
        self.args: list[Any] = _json(list(args or ()), f"{task}: args")
        self.kwargs: dict[str, Any] = _json(dict(kwargs or {}), f"{task}: kwargs")
        self.options: dict[str, Any] = _check_options(options or {})
        self.immutable = immutable
        self._senders = senders
        self._links: list[Signature] = []
        self._errbacks: list[Signature] = []

    @property
    def name(self) -> str:
        return self.task

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task}{'!' if self.immutable else ''}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable (set, link), as Celery's

    def set(self, **options: Any) -> Signature:
        """Set send options (queue, routing_key, countdown, eta, expires, priority, task_id,
        headers, result_expires, ...) on this signature; returns it."""
        self.options.update(_check_options(options))
        return self

    def set_immutable(self, immutable: bool) -> Signature:
        self.immutable = immutable
        return self

    def clone(
        self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Signature:
        """A copy; ``args`` are prepended to its arguments, ``kwargs`` and options merged."""
        copy = Signature(
            self.task,
            [*_json(list(args), f"{self.task}: args"), *self.args],
            {**self.kwargs, **(kwargs or {})},
            {**self.options, **options},
            immutable=self.immutable,
            senders=self._senders,
        )
        copy._links = [s.clone() for s in self._links]
        copy._errbacks = [s.clone() for s in self._errbacks]
        return copy

    def link(self, callback: Signature) -> Signature:
        """Send ``callback`` with this task's result prepended once it succeeded; returns it."""
        self._links.append(_task_signature(callback, "link"))
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Send ``errback`` with this task's id prepended once it failed for good; returns it."""
        self._errbacks.append(_task_signature(errback, "link_error"))
        return errback

    def to_node(self) -> TaskNode:
        return TaskNode(
            task=self.task,
            args=self.args,
            kwargs=self.kwargs,
            options=self.options,
            immutable=self.immutable,
            link=[s.to_node() for s in self._links],
            link_error=[s.to_node() for s in self._errbacks],
        )

    def apply_async(
        self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        result: AsyncResult = super().apply_async(args, kwargs, **options)
        return result

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)


class chain(Workflow):  # Celery's name, lower case
    """Tasks one after the other, each result prepended to the next task's arguments.

    ``chain(a, b, c)`` is ``a | b | c``; a group followed by a task is a chord.
    The result is the last task's, with ``.parent`` leading back.
    """

    def __init__(self, *tasks: Workflow | Iterable[Workflow]) -> None:
        flat: list[Workflow] = []
        items: Iterable[Any] = tasks
        if len(tasks) == 1 and not isinstance(tasks[0], Workflow):
            items = tasks[0]
        for item in items:
            if isinstance(item, chain):
                flat += item.tasks
            elif isinstance(item, Workflow):
                flat.append(item)
            else:
                raise ConfigError(f"chain() takes signatures, got {item!r:.80}")
        # A group followed by anything is a chord (Celery's rule): the next one is its body.
        self.tasks: list[Workflow] = []
        for item in flat:
            previous = self.tasks[-1] if self.tasks else None
            if isinstance(previous, group):
                self.tasks[-1] = chord(previous, item)
            else:
                self.tasks.append(item)

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)

    def _members(self) -> Iterable[Workflow]:
        return self.tasks

    def to_node(self) -> ChainNode:
        return ChainNode(tasks=[t.to_node() for t in self.tasks])

    def link_error(self, errback: Signature) -> Signature:
        """``errback`` runs when any task of the chain fails for good; returns it."""
        for task in _signatures_in(self):
            task.link_error(errback)
        return errback


class group(Workflow):  # Celery's name, lower case
    """Tasks in parallel: ``group(add.s(i, i) for i in range(10))``; a :class:`GroupResult`.

    Its tasks are published with their confirms pipelined (thousands at a time).
    """

    def __init__(self, *tasks: Workflow | Iterable[Workflow]) -> None:
        items: Iterable[Any] = tasks
        if len(tasks) == 1 and not isinstance(tasks[0], Workflow):
            items = tasks[0]
        self.tasks: list[Workflow] = []
        for item in items:
            if not isinstance(item, Workflow):
                raise ConfigError(f"group() takes signatures, got {item!r:.80}")
            self.tasks.append(item)

    def __repr__(self) -> str:
        return f"group({', '.join(repr(t) for t in self.tasks)})"

    def __len__(self) -> int:
        return len(self.tasks)

    def _members(self) -> Iterable[Workflow]:
        return self.tasks

    def to_node(self) -> GroupNode:
        return GroupNode(tasks=[t.to_node() for t in self.tasks])

    def apply_async(
        self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        result: GroupResult = super().apply_async(args, kwargs, **options)
        return result

    def link_error(self, errback: Signature) -> Signature:
        for task in _signatures_in(self):
            task.link_error(errback)
        return errback


_Group = group


class chord(Workflow):  # Celery's name, lower case
    """A header group and a body: the body runs once, with the list of the header's
    results in header order. ``chord(header, body)`` is ``group(...) | body``.

    Joined on RabbitMQ alone (docs/workflows.md): no result store, no polling task.
    A header task that fails for good makes the result raise :class:`~amqpq.errors.ChordError`.
    """

    def __init__(
        self,
        header: Workflow | Iterable[Workflow],
        body: Workflow | None = None,
        *,
        expires: float = 86_400.0,
    ) -> None:
        members = header.tasks if isinstance(header, group) else header
        if isinstance(members, Workflow):
            members = [members]
        self.header: list[Workflow] = []
        for item in members:
            if isinstance(item, group):  # a group in a header: its tasks are members
                self.header += item.tasks
            elif isinstance(item, Workflow):
                self.header.append(item)
            else:
                raise ConfigError(f"chord() header takes signatures, got {item!r:.80}")
        if body is not None and not isinstance(body, Workflow):
            raise ConfigError(f"chord() body must be a signature, got {body!r:.80}")
        if not math.isfinite(expires) or expires <= 0:
            raise ConfigError("chord expires must be a positive number of seconds")
        self.body: Workflow | None = body
        self.expires = expires
        self._errbacks: list[Signature] = []

    def __repr__(self) -> str:
        return f"chord([{', '.join(repr(t) for t in self.header)}], {self.body!r})"

    def _members(self) -> Iterable[Workflow]:
        return [*self.header, *([self.body] if self.body is not None else [])]

    def link_error(self, errback: Signature) -> Signature:
        """``errback`` runs (with the chord's id prepended) when a header task fails for good."""
        self._errbacks.append(_task_signature(errback, "link_error"))
        return errback

    def to_node(self) -> ChordNode:
        if self.body is None:
            raise ConfigError("chord(header, body): the body is missing")
        return ChordNode(
            header=[t.to_node() for t in self.header],
            body=self.body.to_node(),
            link_error=[s.to_node() for s in self._errbacks],
            expires=self.expires,
        )

    def __call__(self, body: Workflow | None = None, **options: Any) -> Any:
        """Send it; ``chord(header)(body)`` gives the body here, as in Celery."""
        if body is not None:
            made = chord(self.header, body, expires=self.expires)
            made._errbacks = list(self._errbacks)
            return made.apply_async(**options)
        return self.apply_async(**options)


class Chunks:
    """``add.chunks(items, 10)``: the items in tasks of ten calls each (a group of starmaps)."""

    def __init__(
        self, task: str, items: Iterable[Any], size: int, senders: WorkflowSenders
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"chunks: the size must be a positive integer, got {size!r}")
        self.task = task
        self.items = [list(item) for item in items]
        self.size = size
        self._senders = senders

    def group(self) -> _Group:
        """The group of starmap tasks, one per chunk."""
        from_task = self.task
        parts = [self.items[i : i + self.size] for i in range(0, len(self.items), self.size)]
        made = group(
            Signature(STARMAP_TASK, [from_task, part], senders=self._senders) for part in parts
        )
        made._senders = self._senders
        return made

    def apply_async(self, **options: Any) -> GroupResult:
        """Send the chunks; ``get()`` gives a list of lists (one per chunk)."""
        return self.group().apply_async(**options)

    def delay(self) -> GroupResult:
        return self.apply_async()


# -- results ------------------------------------------------------------------------------------


class GroupResult:
    """The results of a group, in the group's order: ``g.get(timeout=10)`` -> a list."""

    def __init__(self, group_id: str | None, results: Sequence[AsyncResult | GroupResult]) -> None:
        self.id = group_id
        self.results: list[AsyncResult | GroupResult] = list(results)
        self.parent: Any = None

    def __repr__(self) -> str:
        return f"<GroupResult {self.id}: {self.completed_count()}/{len(self.results)} done>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult | GroupResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult | GroupResult:
        return self.results[index]

    def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Every member's result in order; raises the first failed member's error (with
        ``propagate``), :class:`~amqpq.errors.ResultTimeoutError` after ``timeout``."""
        deadline = _deadline_after(timeout)
        values = []
        for result in self.results:
            left = _remaining(deadline)
            values.append(result.get(None if left is None else max(0.0, left), propagate))
        return values

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        deadline = _deadline_after(timeout)
        values = []
        for result in self.results:
            left = _remaining(deadline)
            values.append(await result.aget(None if left is None else max(0.0, left), propagate))
        return values

    def join(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Alias of :meth:`get` (Celery's name)."""
        return self.get(timeout=timeout, propagate=propagate)

    def ready(self) -> bool:
        """True once every member reached a final state."""
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        """How many members succeeded."""
        return sum(1 for r in self.results if r.successful())

    def revoke(self, terminate: bool = False) -> None:
        """Ask the workers not to run any member still waiting (``terminate``: stop running ones)."""
        handles = list(_handles(self))
        links = next((h.links for h in handles if h.links is not None), None)
        if links is None:
            raise ConfigError("revoking a group needs the App: use the handle apply_async returned")
        links.revoke([h.id for h in handles], terminate)


def _handles(result: AsyncResult | GroupResult) -> Iterator[AsyncResult]:
    if isinstance(result, GroupResult):
        for member in result.results:
            yield from _handles(member)
    else:
        yield result


def _deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


# -- building blocks ----------------------------------------------------------------------------


def signature(
    varies: str | Mapping[str, Any] | Signature,
    args: Iterable[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    immutable: bool = False,
    app: HasSenders | None = None,
) -> Signature:
    """A signature by task name, without importing the task's code: ``signature("tasks.add",
    args=(2, 2))``; or made again from ``to_dict()`` data. ``app`` sends it (default: the
    current App, as for ``@shared_task`` tasks)."""
    senders = app.senders if app is not None else None
    if isinstance(varies, Signature):
        return varies.clone()
    if isinstance(varies, Mapping):
        return _from_data(varies, senders)
    return Signature(varies, args, kwargs, options, immutable=immutable, senders=senders)


def _from_data(data: Mapping[str, Any], app: WorkflowSenders | None) -> Signature:
    try:
        node = TaskNode.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(f"not a signature: {exc.errors()[0]['msg']}") from exc
    return _from_node(node, app)


def _from_node(node: TaskNode, app: WorkflowSenders | None) -> Signature:
    made = Signature(
        node.task, node.args, node.kwargs, node.options, immutable=node.immutable, senders=app
    )
    made._links = [_from_node(n, app) for n in node.link]
    made._errbacks = [_from_node(n, app) for n in node.link_error]
    return made


def _task_signature(value: Any, what: str) -> Signature:
    if not isinstance(value, Signature):
        raise ConfigError(f"{what}() takes a task signature (task.s(...)), got {value!r:.80}")
    return value


def _signatures_in(workflow: Workflow) -> Iterator[Signature]:
    if isinstance(workflow, Signature):
        yield workflow
    for member in workflow._members():
        yield from _signatures_in(member)


def _find_senders(members: Iterable[Workflow]) -> WorkflowSenders | None:
    for member in members:
        found = member._senders or _find_senders(member._members())
        if found is not None:
            return found
    return None


def _partial(node: Node, args: list[Any], kwargs: Mapping[str, Any]) -> Node:
    """Add the caller's arguments to the task(s) that start ``node``."""
    if not args and not kwargs:
        return node
    if isinstance(node, TaskNode):
        return node.model_copy(
            update={
                "args": [*args, *node.args],
                "kwargs": {**node.kwargs, **_json(kwargs, "kwargs")},
            }
        )
    if isinstance(node, ChainNode):
        if not node.tasks:
            return node
        return node.model_copy(
            update={"tasks": [_partial(node.tasks[0], args, kwargs), *node.tasks[1:]]}
        )
    if isinstance(node, GroupNode):
        return node.model_copy(update={"tasks": [_partial(n, args, kwargs) for n in node.tasks]})
    return node.model_copy(update={"header": [_partial(n, args, kwargs) for n in node.header]})


def _with_options(node: Node, options: Mapping[str, Any]) -> Node:
    """Options of ``apply_async`` for every task that does not set them itself."""
    if not options:
        return node
    if isinstance(node, TaskNode):
        return node.model_copy(update={"options": {**options, **node.options}})
    if isinstance(node, ChainNode | GroupNode):
        return node.model_copy(update={"tasks": [_with_options(n, options) for n in node.tasks]})
    return node.model_copy(
        update={
            "header": [_with_options(n, options) for n in node.header],
            "body": _with_options(node.body, options),
        }
    )


def _with_final_id(node: Node, task_id: str) -> Node:
    """``apply_async(task_id=...)``: the id of the task whose result is the workflow's."""
    if isinstance(node, TaskNode):
        return node.model_copy(update={"options": {**node.options, "task_id": task_id}})
    if isinstance(node, ChainNode):
        if not node.tasks:
            return node
        return node.model_copy(
            update={"tasks": [*node.tasks[:-1], _with_final_id(node.tasks[-1], task_id)]}
        )
    if isinstance(node, GroupNode):
        return node.model_copy(update={"id": task_id})
    return node.model_copy(update={"body": _with_final_id(node.body, task_id)})


def _tasks_of(node: Node) -> Iterator[tuple[str, str]]:
    """(id, task name) of every task of a frozen tree."""
    if isinstance(node, TaskNode):
        yield str(node.options["task_id"]), node.task
    elif isinstance(node, ChainNode | GroupNode):
        for member in node.tasks:
            yield from _tasks_of(member)
    else:
        for member in node.header:
            yield from _tasks_of(member)
        yield from _tasks_of(node.body)


def _result_for(node: Node, found: Mapping[str, AsyncResult], parent: Any) -> Any:
    """The handle of ``node``'s result, its ``parent`` linked (a frozen tree)."""
    if isinstance(node, TaskNode):
        result = found.get(str(node.options["task_id"]))
        if result is None:  # ignore_result: a handle that says so when asked to wait
            from amqpq.rpc import AsyncResult

            result = AsyncResult(str(node.options["task_id"]), task=node.task)
        result.parent = parent
        return result
    if isinstance(node, ChainNode):
        current = parent
        for member in node.tasks:
            current = _result_for(member, found, current)
        return current
    if isinstance(node, GroupNode):
        made = GroupResult(node.id, [_result_for(m, found, None) for m in node.tasks])
        made.parent = parent
        return made
    header = GroupResult(node.id, [_result_for(m, found, None) for m in node.header])
    header.parent = parent
    body = _result_for(node.body, found, header)
    if isinstance(body, GroupResult):
        return body
    # Revoking a chord revokes its header too (the body alone would leave them running).
    body.revoke_also = [h.id for h in _handles(header)] + body.revoke_also
    return body
