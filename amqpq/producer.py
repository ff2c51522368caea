"""Sending tasks: one preparation step shared by a sync producer (pika) and its async twin.

Preparing a task is pure: name, arguments and options -> the envelope and the
AMQP message (exchange, routing key, headers, properties). It validates the
arguments when the task is registered here, resolves the route from the
topology, refuses a route that reaches no queue of the topology file, and turns
``countdown``/``eta`` into a publish to the broker-side delay levels.

Both producers publish persistent, mandatory, confirmed messages through a
transport (:mod:`amqpq.transport.base`: RabbitMQ by default, memory under
:class:`amqpq.testing.TestBroker`), run the App's publish hooks, publish the
``task.sent`` events, and return :class:`AsyncResult` handles whose replies come
back over direct reply-to, or through a durable result queue when
``result_queue=`` is given. They know nothing of the App: it hands each a
:class:`SendContext` (the preparer, the publish policy, the links of result
handles) and a transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from amqpq.celery_canvas import CELERY_PROTOCOL, PROTOCOL_OPTION
from amqpq.celery_wire import encode_celery_task
from amqpq.codec import OutgoingMessage, encode_task
from amqpq.delay import plan_delay
from amqpq.envelope import TaskEnvelope, new_task_id, utcnow
from amqpq.errors import ArgumentsError, ConfigError, UnroutableError
from amqpq.events import event_message
from amqpq.rpc import (
    DIRECT_REPLY_TO,
    AsyncResult,
    PendingResult,
    ReplyRouter,
    ResultLinks,
    deadline_after,
    remaining,
)
from amqpq.topology.routing import Router
from amqpq.wire import MAP_TASK, STARMAP_TASK, is_direct_reply_to
from amqpq.workflow import TaskCall, shape_of

if TYPE_CHECKING:
    from amqpq.registry import Task, TaskOptions, TaskRegistry
    from amqpq.topology.models import Route, Topology
    from amqpq.transport.base import AsyncSendTransport, SyncSendTransport

__all__ = [
    "SEND_OPTIONS",
    "AsyncProducer",
    "PreparedTask",
    "Producer",
    "PublishPolicy",
    "SendContext",
    "TaskCall",
    "TaskPreparer",
    "publish_hooks",
]

log = logging.getLogger("amqpq.producer")

SEND_OPTIONS = frozenset(
    {
        "countdown",
        "eta",
        "exchange",
        "expires",
        "headers",
        "ignore_result",
        "parent_id",
        "priority",
        "queue",
        "reply_to",
        "result_expires",
        "result_queue",
        "root_id",
        "routing_key",
        "shadow",
        "task_id",
    }
)
"""The keyword options ``apply_async`` / ``send_task`` accept."""

WORKFLOW_OPTIONS = frozenset(
    {"chain", "chord", "group_id", "group_index", "link", "link_error", PROTOCOL_OPTION}
)
"""The envelope's workflow fields, set by :mod:`amqpq.workflow`'s plans (docs/workflows.md),
and ``protocol="celery"``: the next task of a Celery workflow is a Celery message again
(:mod:`amqpq.celery_canvas`)."""

_UNSENT: BaseException = RuntimeError("not sent")

# Delays shorter than this are not worth a trip through the delay levels.
_MIN_DELAY_MS = 1


@dataclass(frozen=True, slots=True)
class PreparedTask:
    """A task ready to publish."""

    envelope: TaskEnvelope
    message: OutgoingMessage
    task: Task[Any, Any] | None
    reply_to: str | None
    """None (ignore_result), ``amq.rabbitmq.reply-to``, or a durable result queue."""
    targets: frozenset[str]
    """The queues of the topology file the route reaches."""
    delay_ms: int = 0

    @property
    def result_queue(self) -> str | None:
        reply_to = self.reply_to
        return reply_to if reply_to is not None and not is_direct_reply_to(reply_to) else None

    def convert(self) -> Callable[[Any], Any] | None:
        return self.task.parameters.result_from_wire if self.task is not None else None


class TaskPreparer:
    """Name, arguments and options -> :class:`PreparedTask`. Pure; caches route lookups.

    ``registry`` validates the arguments of the tasks it knows; ``topology`` is
    called once, on the first task prepared (an App reads its file lazily). Routes
    and the static routing check are cached per (exchange, routing key, headers),
    so a publish costs no topology work.
    """

    def __init__(self, registry: TaskRegistry, topology: Callable[[], Topology]) -> None:
        self.registry = registry
        self._load_topology = topology
        self._topology: Topology | None = None
        self._routes: dict[str, Route] = {}
        self._protocols: dict[str, str] = {}
        self._targets: dict[tuple[str, str, str], frozenset[str]] = {}
        self._router: Router | None = None

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            self._topology = self._load_topology()
        return self._topology

    @property
    def prefix(self) -> str:
        """The prefix of amqpq's own broker objects (delay levels, events exchange)."""
        return self.topology.infrastructure.prefix

    def route(self, name: str) -> Route:
        route = self._routes.get(name)
        if route is None:
            route = self._routes[name] = self.topology.route_for(name)
        return route

    def protocol(self, name: str) -> str:
        """The message format of a task: its route's ``protocol`` ("amqpq" without a route).

        It follows the task, not the call: a ``queue=`` or ``routing_key=`` of one call
        still reaches the workers that serve the task (Celery's, during a migration).
        """
        protocol = self._protocols.get(name)
        if protocol is None:
            has_route = self.topology.route_pattern_for(name) is not None
            protocol = self._protocols[name] = self.route(name).protocol if has_route else "amqpq"
        return protocol

    def targets(
        self, exchange: str, routing_key: str, headers: Mapping[str, Any]
    ) -> frozenset[str]:
        key = (exchange, routing_key, repr(sorted(headers.items())) if headers else "")
        found = self._targets.get(key)
        if found is None:
            if self._router is None:
                self._router = Router(self.topology)
            found = self._targets[key] = frozenset(
                self._router.targets(exchange, routing_key, headers)
            )
        return found

    def prepare(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        validate: bool = True,
    ) -> PreparedTask:
        """``validate=False`` leaves the arguments as given (JSON already): a workflow's
        next task, whose arguments its own worker checks (and dead-letters if wrong)."""
        options = options or {}
        unknown = set(options) - SEND_OPTIONS - WORKFLOW_OPTIONS
        if unknown:
            raise ConfigError(
                f"unknown send option(s) {', '.join(sorted(unknown))}; "
                f"expected: {', '.join(sorted(SEND_OPTIONS))}"
            )
        if not isinstance(name, str) or not 0 < len(name) <= 255:
            raise ConfigError(f"task name must be 1 to 255 characters, got {name!r}")
        task = self.registry.find(name)
        if isinstance(args, str | bytes | Mapping):
            raise ArgumentsError(f"{name}: args must be a list or tuple, got {type(args).__name__}")
        if task is not None and validate:
            wire_args, wire_kwargs = task.parameters.to_wire(args, kwargs or {})
        else:
            wire_args, wire_kwargs = list(args), dict(kwargs or {})
        task_options = task.options if task is not None else None

        now = utcnow()
        eta = _eta(options.get("countdown"), options.get("eta"), now)
        expires_option = options.get("expires")
        if expires_option is None and task_options is not None:
            expires_option = task_options.expires
        expires = _when(expires_option, now, "expires")
        priority = options.get("priority")
        if priority is None and task_options is not None:
            priority = task_options.priority
        if priority is not None and (
            isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 255
        ):
            raise ConfigError(f"priority must be an integer from 0 to 255, got {priority!r}")
        ignore_result = options.get("ignore_result")
        if ignore_result is None:
            ignore_result = task_options.ignore_result if task_options is not None else False
        result_queue = options.get("result_queue")
        if result_queue is not None and (not isinstance(result_queue, str) or not result_queue):
            raise ConfigError(f"result_queue must be a queue name, got {result_queue!r}")
        reply_to_option = options.get("reply_to")
        if reply_to_option is not None and (
            not isinstance(reply_to_option, str) or not reply_to_option
        ):
            raise ConfigError(f"reply_to must be a queue name or address, got {reply_to_option!r}")
        reply_to = None if ignore_result else (result_queue or reply_to_option or DIRECT_REPLY_TO)

        route_name, route_options = name, task_options
        if name in (MAP_TASK, STARMAP_TASK) and wire_args and isinstance(wire_args[0], str):
            # task.map(...): one message that calls the mapped task goes where it goes.
            route_name = wire_args[0]
            mapped = self.registry.find(route_name)
            route_options = mapped.options if mapped is not None else None
        exchange, routing_key, headers = self._resolve_route(route_name, options, route_options)
        targets = self.targets(exchange, routing_key, headers)
        if not targets:
            raise UnroutableError(
                f"task {name!r} would reach no queue: exchange {exchange!r} with routing key "
                f"{routing_key!r}{' and headers ' + repr(headers) if headers else ''} matches "
                "no binding in the topology file"
            )

        task_id = options.get("task_id") or new_task_id()
        if not isinstance(task_id, str) or len(task_id) > 255:
            raise ConfigError(f"task_id must be a string of at most 255 characters: {task_id!r}")
        shadow = options.get("shadow")
        if shadow is not None and (
            not isinstance(shadow, str) or not 0 < len(shadow) <= 255 or not shadow.isprintable()
        ):
            raise ConfigError(
                f"shadow must be a display name of 1 to 255 printable characters, got {shadow!r:.80}"
            )
        try:
            envelope = TaskEnvelope(
                id=task_id,
                task=name,
                args=wire_args,
                kwargs=wire_kwargs,
                eta=eta,
                expires=expires,
                parent_id=options.get("parent_id"),
                root_id=options.get("root_id"),
                created_at=now,
                result_expires=options.get("result_expires"),
                shadow=shadow,
                chain=options.get("chain"),
                chord=options.get("chord"),
                link=options.get("link"),
                link_error=options.get("link_error"),
                group_id=options.get("group_id"),
                group_index=options.get("group_index"),
            )
        except ValidationError as exc:
            raise ConfigError(f"{name}: invalid task options: {exc.errors()[0]['msg']}") from exc

        publish_exchange = exchange
        delay_ms = 0
        if eta is not None:
            delay_ms = math.ceil((eta - now).total_seconds() * 1000)
            if delay_ms >= _MIN_DELAY_MS:
                # Straight to a queue (``queue=``): the delay ends in that queue;
                # otherwise it ends at the exchange, which routes by key and headers.
                plan = plan_delay(
                    delay_ms,
                    prefix=self.prefix,
                    target_exchange=exchange or None,
                    target_queue=routing_key if exchange == "" else None,
                )
                publish_exchange = plan.exchange
                headers = {**headers, **plan.headers}
            else:
                delay_ms = 0
        celery = options.get(PROTOCOL_OPTION) == CELERY_PROTOCOL or self.protocol(name) == "celery"
        encode = encode_celery_task if celery else encode_task
        try:
            message = encode(
                envelope,
                exchange=publish_exchange,
                routing_key=routing_key,
                reply_to=reply_to,
                priority=priority,
                headers=headers,
            )
        except (PydanticSerializationError, TypeError) as exc:
            raise ArgumentsError(f"{name}: arguments must be JSON-serialisable: {exc}") from exc
        return PreparedTask(
            envelope=envelope,
            message=message,
            task=task,
            reply_to=reply_to,
            targets=targets,
            delay_ms=delay_ms,
        )

    def _resolve_route(
        self, name: str, options: Mapping[str, Any], task_options: TaskOptions | None = None
    ) -> tuple[str, str, dict[str, Any]]:
        """Where to publish: the call's ``queue=`` or exchange/routing key, else the
        task's own ``queue`` option, else the topology's route for the name.

        A queue is reached through the default exchange (routing key = queue name),
        so it gets the task and no sibling queue does, whatever the exchanges bind.
        """
        exchange = options.get("exchange")
        routing_key = options.get("routing_key")
        call_headers = options.get("headers") or {}
        if not isinstance(call_headers, Mapping):
            raise ConfigError(f"headers must be a mapping, got {type(call_headers).__name__}")
        queue = options.get("queue")
        if queue is None and exchange is None and routing_key is None and task_options:
            queue = task_options.queue
        if queue is not None:
            if not isinstance(queue, str) or not queue:
                raise ConfigError(f"queue must be a queue name, got {queue!r}")
            if exchange is not None or routing_key is not None:
                raise ConfigError("give queue= or exchange=/routing_key=, not both")
            return "", queue, dict(call_headers)
        if exchange is not None and routing_key is not None:
            return str(exchange), str(routing_key), dict(call_headers)
        route = self.route(name)
        if exchange is None or exchange == route.exchange:
            # The route's headers belong to its exchange: keep them, the call's win.
            key = route.routing_key if routing_key is None else str(routing_key)
            return route.exchange, key, {**route.headers, **call_headers}
        return str(exchange), "", dict(call_headers)


def _aware(value: datetime) -> datetime:
    # A naive datetime is taken as UTC (documented in docs/protocol.md).
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _eta(countdown: Any, eta: Any, now: datetime) -> datetime | None:
    if countdown is not None and eta is not None:
        raise ConfigError("give countdown or eta, not both")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int | float | timedelta):
            raise ConfigError(f"countdown must be seconds, got {countdown!r}")
        seconds = countdown.total_seconds() if isinstance(countdown, timedelta) else countdown
        if not math.isfinite(seconds) or seconds < 0:
            raise ConfigError(f"countdown must be >= 0 seconds, got {countdown!r}")
        return now + timedelta(seconds=seconds)
    return _when(eta, now, "eta", relative=False)


def _when(value: Any, now: datetime, what: str, *, relative: bool = True) -> datetime | None:
    """A datetime (naive = UTC), ISO text, or (when ``relative``) seconds from now."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value))
        except ValueError as exc:
            raise ConfigError(f"{what}: {value!r} is not an ISO 8601 date and time") from exc
    if relative and isinstance(value, timedelta):
        return now + value
    if relative and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{what} must be a finite number of seconds")
        return now + timedelta(seconds=value)
    expected = "a datetime, ISO text or seconds" if relative else "a datetime or ISO text"
    raise ConfigError(f"{what} must be {expected}, got {value!r}")


def sent_event(prefix: str, prepared: PreparedTask) -> OutgoingMessage:
    """The ``task.sent`` event of a task (published next to it when events are on)."""
    envelope = prepared.envelope
    return event_message(
        "task.sent",
        prefix=prefix,
        task=envelope.task,
        id=envelope.id,
        exchange=prepared.message.exchange,
        routing_key=prepared.message.routing_key,
        eta=envelope.eta,
        queues=sorted(prepared.targets),
        shadow=envelope.shadow,
        **shape_of(envelope),
    )


class PublishPolicy:
    """What runs around each publish, shared by an App and all its producers (hooks
    registered and ``send_events`` switched later apply to producers made earlier)."""

    __slots__ = ("hooks", "send_events")

    def __init__(
        self, hooks: Mapping[str, list[Callable[..., Any]]], *, send_events: bool = False
    ) -> None:
        self.hooks = hooks
        """Hook name -> callables: ``before_publish`` and ``after_publish`` run here."""
        self.send_events = send_events
        """Publish a ``task.sent`` event with each task."""


@dataclass(frozen=True, slots=True)
class SendContext:
    """What a producer needs from its App, which builds it once and hands it to each."""

    preparer: TaskPreparer
    """The registry and the routing view: name, arguments, options -> message."""
    policy: PublishPolicy
    links: ResultLinks | None = None
    """Given to each result handle (revoke, result conversion)."""


def publish_hooks(
    hooks: Mapping[str, list[Callable[..., Any]]],
    name: str,
    prepared: list[PreparedTask],
    results: list[AsyncResult] | None = None,
) -> None:
    """Call the ``before_publish`` / ``after_publish`` hooks (errors logged, ignored).

    ``after_publish`` is called for the tasks the broker confirmed (``results``)."""
    found = hooks.get(name)
    if not found:
        return
    by_id = {r.id: r for r in results} if results is not None else None
    for p in prepared:
        message = p.message
        kwargs: dict[str, Any] = {
            "envelope": p.envelope,
            "exchange": message.exchange,
            "routing_key": message.routing_key,
        }
        if by_id is None:
            kwargs["headers"] = message.properties.headers
        else:
            result = by_id.get(p.envelope.id)
            if result is None:  # refused by the broker: not published
                continue
            kwargs["result"] = result
        for hook in found:
            try:
                hook(**kwargs)
            except Exception:
                log.exception("hook %s (%r) raised; ignored", name, hook)


def _raise_first(errors: list[BaseException], total: int) -> None:
    if not errors:
        return
    first = errors[0]
    if total > 1:
        first.add_note(f"{len(errors)} of {total} tasks in this batch were not sent; the rest were")
    raise first


def _refuse_result_queues(prepared: Sequence[PreparedTask]) -> None:
    for p in prepared:
        if p.result_queue:
            raise ConfigError(
                f"{p.envelope.task}: workflows answer on the caller's direct reply-to "
                "(or not at all with ignore_result=True); result_queue= is not supported"
            )


def _calls(name: str, iterable: Iterable[Any], options: Mapping[str, Any]) -> list[TaskCall]:
    calls = []
    for item in iterable:
        if isinstance(item, Mapping):
            calls.append(TaskCall(name, (), item, options))
        elif isinstance(item, list | tuple):
            calls.append(TaskCall(name, item, {}, options))
        else:
            calls.append(TaskCall(name, (item,), {}, options))
    return calls


def _task_name(task: str | Task[Any, Any]) -> str:
    return task if isinstance(task, str) else task.name


# -- sync ---------------------------------------------------------------------------------------


class Producer:
    """The synchronous producer (Django, Flask, scripts), on one connection (pika by default).

    Thread-safe: transport calls happen under its lock. Threads waiting for results
    take turns pumping the connection, and every reply wakes its own waiter.
    """

    def __init__(self, context: SendContext, transport: SyncSendTransport) -> None:
        self.preparer = context.preparer
        self._policy = context.policy
        self._links = context.links
        self._router = ReplyRouter()
        self._broker = transport
        transport.listen(self._router.dispatch, self._lost)
        self._queues: dict[str, _QueueResults] = {}
        self._pumping = False
        self._contenders = 0

    def __repr__(self) -> str:
        return f"<Producer {self._broker.name}>"

    @property
    def broker(self) -> SyncSendTransport:
        return self._broker

    def _lost(self, reason: str) -> None:
        self._router.lose(reason, self._broker.generation)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[SyncSendTransport]:
        """The connection lock; a thread pumping for replies is asked to let go first."""
        self._contenders += 1
        try:
            if self._pumping:
                self._broker.wake_pump()
            self._broker.lock.acquire()
        finally:
            self._contenders -= 1
        try:
            yield self._broker
        finally:
            self._broker.lock.release()
            with self._router.changed:
                self._router.changed.notify_all()

    def connect(self) -> None:
        """Open the connection now instead of on the first send."""
        with self._locked() as broker:
            broker.connect()

    def close(self) -> None:
        with self._locked() as broker:
            broker.close()

    # -- sending ----------------------------------------------------------------------------

    def send_task(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send one task by name and wait for the broker's confirm (not for the result)."""
        prepared = self.preparer.prepare(name, args, kwargs, options)
        results, errors = self._publish([prepared])
        _raise_first(errors, 1)
        return results[0]

    def send_many(self, calls: Iterable[TaskCall]) -> list[AsyncResult]:
        """Send a batch with many confirms in flight (much faster than one ``send_task`` each).

        Every call is prepared (validated and routed) before anything is published,
        so a bad call sends nothing. If the broker refuses some messages, the first
        error is raised (with a note counting them) after the rest were sent.
        """
        prepared = [self.preparer.prepare(c.name, c.args, c.kwargs, c.options) for c in calls]
        results, errors = self._publish(prepared)
        _raise_first(errors, len(prepared))
        return results

    def publish_messages(self, messages: list[OutgoingMessage]) -> list[BaseException | None]:
        """Publish prepared messages that are not tasks (revocations, events), confirmed;
        per message its error or None."""
        with self._locked() as broker:
            return [error for error, _ in broker.publish_many(messages)]

    def map(
        self, task: str | Task[Any, Any], iterable: Iterable[Any], **options: Any
    ) -> list[AsyncResult]:
        """``send_many`` for one task: each item is an argument tuple/list, a kwargs mapping,
        or a single argument. ``producer.map("tasks.add", [(1, 2), (3, 4)])``."""
        return self.send_many(_calls(_task_name(task), iterable, options))

    def send_workflow(
        self, calls: Sequence[TaskCall], expected: Sequence[tuple[str, str]] = ()
    ) -> dict[str, AsyncResult]:
        """Send a workflow's first tasks (confirms pipelined, as :meth:`send_many`) and
        return a handle by task id on each of them and on each ``(id, task name)`` in
        ``expected``: the tasks workers will send later, whose replies come back on
        this producer's reply path too."""
        prepared = [self.preparer.prepare(c.name, c.args, c.kwargs, c.options) for c in calls]
        _refuse_result_queues(prepared)
        later = [PendingResult(task_id, name) for task_id, name in expected]
        results, errors = self._publish(prepared, later)
        _raise_first(errors, len(prepared))
        found = {r.id: r for r in results}
        for pending in later:
            found[pending.id] = AsyncResult(
                pending.id, task=pending.task, backend=self, pending=pending, links=self._links
            )
        return found

    def _publish(
        self, prepared: list[PreparedTask], later: Sequence[PendingResult] = ()
    ) -> tuple[list[AsyncResult], list[BaseException]]:
        hooks = self._policy.hooks
        publish_hooks(hooks, "before_publish", prepared)
        pendings = [self._pending_for(p) for p in prepared]
        for waiting in later:  # answered later, on this reply path, by the workflow's workers
            self._router.add(waiting)
        errors: list[BaseException] = []
        with self._locked() as broker:
            for queue in {p.result_queue for p in prepared if p.result_queue}:
                broker.ensure_queue(queue)
            messages = [p.message for p in prepared]
            if self._policy.send_events:
                prefix = self.preparer.prefix
                messages += [sent_event(prefix, p) for p in prepared]
            outcomes = broker.publish_many(messages)[: len(prepared)]
            results = []
            for p, pending, (error, generation) in zip(prepared, pendings, outcomes, strict=True):
                if error is not None:
                    if pending is not None:
                        self._router_for(p).discard(pending)
                    errors.append(error)
                    continue
                if pending is not None and p.reply_to == DIRECT_REPLY_TO:
                    pending.generation = generation
                    if generation != broker.generation or not broker.is_connected:
                        pending.lost = "the connection it was sent on closed"
                results.append(self._result(p, pending))
            for waiting in later:
                waiting.generation = broker.generation
                if not broker.is_connected:
                    waiting.lost = "the connection it was sent on closed"
        publish_hooks(hooks, "after_publish", prepared, results)
        return results, errors

    def _pending_for(self, prepared: PreparedTask) -> PendingResult | None:
        if prepared.reply_to is None:
            return None
        pending = PendingResult(prepared.envelope.id, prepared.envelope.task, prepared.convert())
        # Registered before publishing: a fast worker may answer before the confirm arrives.
        self._router_for(prepared).add(pending)
        return pending

    def _router_for(self, prepared: PreparedTask) -> ReplyRouter:
        queue = prepared.result_queue
        return self._queue_results(queue).router if queue else self._router

    def _result(self, prepared: PreparedTask, pending: PendingResult | None) -> AsyncResult:
        backend: Any = None
        if pending is not None:
            queue = prepared.result_queue
            backend = self._queue_results(queue) if queue else self
        return AsyncResult(
            prepared.envelope.id,
            task=prepared.envelope.task,
            backend=backend,
            pending=pending,
            links=self._links,
        )

    def _queue_results(self, queue: str) -> _QueueResults:
        results = self._queues.get(queue)
        if results is None:
            results = self._queues.setdefault(queue, _QueueResults(self, queue))
        return results

    def result_from_queue(self, task_id: str, queue: str) -> AsyncResult:
        """A handle on ``task_id``'s result in the durable result queue ``queue``."""
        results = self._queue_results(queue)
        pending = PendingResult(task_id, None)
        results.router.add(pending)
        return AsyncResult(task_id, backend=results, pending=pending, links=self._links)

    # -- waiting over direct reply-to (ResultBackend) ----------------------------------------

    def wait(self, pending: PendingResult, timeout: float | None) -> None:
        if not pending.settled:
            self._broker.expect_replies(pending.id, pending.task, pending.state.value)
        deadline = deadline_after(timeout)
        changed = self._router.changed
        lock = self._broker.lock
        while not pending.settled:
            left = remaining(deadline)
            if left is not None and left <= 0:
                return
            slice_ = 1.0 if left is None else min(left, 1.0)
            if self._contenders == 0 and lock.acquire(blocking=False):
                try:
                    if not pending.settled:
                        self._pumping = True
                        self._broker.pump(slice_)
                finally:
                    self._pumping = False
                    lock.release()
                if self._contenders:
                    with changed:
                        changed.wait(0.01)
            else:
                with changed:
                    if not pending.settled:
                        changed.wait(min(slice_, 0.05))
        # Another waiter may have to take over pumping.
        with changed:
            changed.notify_all()

    async def await_(self, pending: PendingResult, timeout: float | None) -> None:
        await asyncio.to_thread(self.wait, pending, timeout)

    def refresh(self, pending: PendingResult) -> None:
        lock = self._broker.lock
        if self._broker.is_connected and lock.acquire(blocking=False):
            try:
                self._broker.pump(0)
            finally:
                lock.release()


class _QueueResults:
    """Results collected from one durable result queue (sync). Scans by basic.get,
    takes the replies this process waits for and leaves the others in the queue."""

    def __init__(self, producer: Producer, queue: str) -> None:
        self.producer = producer
        self.queue = queue
        self.router = ReplyRouter()
        self._last_poll = 0.0

    def _poll(self) -> None:
        wanted = self.router.wanted()
        if not wanted:
            return
        with self.producer._locked() as broker:
            found = broker.collect(self.queue, wanted)
        self._last_poll = time.monotonic()
        for correlation_id, body in found:
            self.router.dispatch(correlation_id, body)

    def wait(self, pending: PendingResult, timeout: float | None) -> None:
        deadline = deadline_after(timeout)
        pause = 0.005
        self._poll()
        if not pending.settled:
            self.producer._broker.expect_replies(pending.id, pending.task, pending.state.value)
        while True:
            if pending.settled:
                return
            left = remaining(deadline)
            if left is not None and left <= 0:
                return
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, 0.25)
            self._poll()

    async def await_(self, pending: PendingResult, timeout: float | None) -> None:
        await asyncio.to_thread(self.wait, pending, timeout)

    def refresh(self, pending: PendingResult) -> None:
        if time.monotonic() - self._last_poll > 0.1:
            self._poll()


# -- async --------------------------------------------------------------------------------------

PublishWindow = Callable[..., Awaitable[list[int | BaseException]]]
"""A transport's ``publish_window(messages, *, timeout)``: per message, the reply path's
generation that took it or its error (see ``ReplyChannel.publish_window``)."""

# Lanes of windows in a bulk send: one writes while the others wait for their confirms.
_WINDOW_LANES = 4


class _Expected:
    """What a task's publish leaves registered for its reply (nothing without one)."""

    __slots__ = ("backend", "pending", "queue", "router")

    def __init__(self) -> None:
        self.pending: PendingResult | None = None
        self.router: ReplyRouter | None = None
        self.backend: Any = None
        self.queue: str | None = None

    def forget(self) -> None:
        """Not published: stop waiting for its reply."""
        if self.pending is not None and self.router is not None:
            self.router.discard(self.pending)


class AsyncProducer:
    """The asyncio producer (FastAPI, async code), on one robust connection (aio-pika by default).

    Concurrent ``send_task`` calls from many coroutines keep their confirms in flight.
    Use it from the event loop it was created on.
    """

    def __init__(
        self,
        context: SendContext,
        transport: AsyncSendTransport,
        *,
        confirm_timeout: float = 30.0,
    ) -> None:
        self.preparer = context.preparer
        self._policy = context.policy
        self._links = context.links
        self.confirm_timeout = confirm_timeout
        self._router = ReplyRouter()
        self._rpc = transport
        transport.listen(self._router.dispatch, self._lost)
        self._queues: dict[str, _AsyncQueueResults] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"<AsyncProducer {self._rpc.name}>"

    @property
    def broker(self) -> AsyncSendTransport:
        return self._rpc

    def _lost(self, reason: str) -> None:
        self._router.lose(reason, self._rpc.generation)

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._rpc.connect()

    async def close(self) -> None:
        await self._rpc.close()

    async def __aenter__(self) -> AsyncProducer:
        await self.connect()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- sending ----------------------------------------------------------------------------

    async def send_task(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send one task by name and wait for the broker's confirm (not for the result)."""
        prepared = self.preparer.prepare(name, args, kwargs, options)
        return await self._send(prepared)

    async def send_many(
        self, calls: Iterable[TaskCall], *, concurrency: int = 1000
    ) -> list[AsyncResult]:
        """Send a batch with up to ``concurrency`` confirms in flight. Every call is
        prepared before anything is published; the first broker error is raised
        after the rest were sent."""
        prepared = [self.preparer.prepare(c.name, c.args, c.kwargs, c.options) for c in calls]
        outcomes = await self._send_all(prepared, concurrency)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        for error in errors:
            if not isinstance(error, Exception):
                raise error
        _raise_first(errors, len(prepared))
        return [o for o in outcomes if isinstance(o, AsyncResult)]

    async def send_workflow(
        self, calls: Sequence[TaskCall], expected: Sequence[tuple[str, str]] = ()
    ) -> dict[str, AsyncResult]:
        """:meth:`Producer.send_workflow` for asyncio code."""
        prepared = [self.preparer.prepare(c.name, c.args, c.kwargs, c.options) for c in calls]
        _refuse_result_queues(prepared)
        found: dict[str, AsyncResult] = {}
        later = []
        for task_id, name in expected:  # registered before anything is published
            pending = PendingResult(task_id, name)
            pending.event = asyncio.Event()
            self._router.add(pending)
            later.append(pending)
            found[task_id] = AsyncResult(
                task_id, task=name, backend=self, pending=pending, links=self._links
            )
        outcomes = await self._send_all(prepared, 1000)
        errors: list[BaseException] = []
        for outcome in outcomes:
            if isinstance(outcome, AsyncResult):
                found[outcome.id] = outcome
            elif not isinstance(outcome, Exception):
                raise outcome
            else:
                errors.append(outcome)
        for pending in later:  # on the reply path the first tasks were sent on
            pending.generation = self._rpc.generation
        _raise_first(errors, len(prepared))
        return found

    async def _send_all(
        self, prepared: Sequence[PreparedTask], concurrency: int
    ) -> list[AsyncResult | BaseException]:
        """Send each task, ``concurrency`` at a time: per task its result or its error,
        in order. ``concurrency`` coroutines take the tasks in turn, rather than a task
        each waiting on a semaphore (the same publishes, without a task per message).

        On a transport that can write a window of publishes at once (``publish_window``),
        a few lanes take windows of tasks instead: the window's frames go out in one
        write, with the same publishes, confirms, errors and retries per message."""
        outcomes: list[AsyncResult | BaseException] = [_UNSENT] * len(prepared)
        publish_window: PublishWindow | None = getattr(self._rpc, "publish_window", None)
        if publish_window is not None and concurrency > 1 and len(prepared) > 1:
            # A lane writes its next window while the others' confirms come back, so the
            # broker always has work; together they keep up to ``concurrency`` in flight.
            lanes = min(_WINDOW_LANES, concurrency)
            size = min(concurrency // lanes, -(-len(prepared) // lanes))
            windows = iter([(i, prepared[i : i + size]) for i in range(0, len(prepared), size)])

            async def window_lane() -> None:
                for start, window in windows:
                    await self._send_window(publish_window, start, window, outcomes)

            running = [window_lane() for _ in range(lanes)]
        else:
            todo = iter(enumerate(prepared))

            async def lane() -> None:
                for index, p in todo:
                    try:
                        outcomes[index] = await self._send(p)
                    except Exception as exc:
                        outcomes[index] = exc

            running = [lane() for _ in range(min(concurrency, len(prepared)))]
        for ended in await asyncio.gather(*running, return_exceptions=True):
            if ended is not None:
                raise ended
        return outcomes

    async def _send_window(
        self,
        publish_window: PublishWindow,
        start: int,
        window: Sequence[PreparedTask],
        outcomes: list[AsyncResult | BaseException],
    ) -> None:
        """:meth:`_send` for each task of ``window`` (``outcomes[start:]``), the publishes
        written together."""
        staged: list[tuple[int, PreparedTask, _Expected]] = []
        for index, prepared in enumerate(window, start):
            try:
                staged.append((index, prepared, await self._expect(prepared)))
            except Exception as exc:
                outcomes[index] = exc
        if not staged:
            return
        try:
            published = await publish_window(
                [p.message for _, p, _ in staged], timeout=self.confirm_timeout
            )
        except BaseException:
            for _, _, expected in staged:
                expected.forget()
            raise
        for (index, prepared, expected), outcome in zip(staged, published, strict=True):
            if isinstance(outcome, BaseException):
                expected.forget()
                outcomes[index] = outcome
            else:
                outcomes[index] = self._sent(prepared, expected, outcome)

    async def publish_message(self, message: OutgoingMessage) -> None:
        """Publish a prepared message that is not a task (a revocation), confirmed."""
        await self._rpc.publish_plain(message, timeout=self.confirm_timeout)

    async def map(
        self, task: str | Task[Any, Any], iterable: Iterable[Any], **options: Any
    ) -> list[AsyncResult]:
        """``send_many`` for one task (see :meth:`Producer.map`)."""
        return await self.send_many(_calls(_task_name(task), iterable, options))

    async def _send(self, prepared: PreparedTask) -> AsyncResult:
        expected = await self._expect(prepared)
        try:
            generation = await self._rpc.publish(prepared.message, timeout=self.confirm_timeout)
        except BaseException:
            expected.forget()
            raise
        return self._sent(prepared, expected, generation)

    async def _expect(self, prepared: PreparedTask) -> _Expected:
        """Before a task's publish: its ``before_publish`` hooks, and where its reply goes
        (registered first, so that no reply can come before it)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        publish_hooks(self._policy.hooks, "before_publish", [prepared])
        expected = _Expected()
        queue = prepared.result_queue
        if prepared.reply_to is not None:
            pending = PendingResult(
                prepared.envelope.id, prepared.envelope.task, prepared.convert()
            )
            pending.event = asyncio.Event()
            router = self._router
            if queue:
                results = self._queue_results(queue)
                router, expected.backend = results.router, results
                await self._rpc.ensure_queue(queue)
            else:
                expected.backend = self
            router.add(pending)
            expected.pending, expected.router, expected.queue = pending, router, queue
        return expected

    def _sent(self, prepared: PreparedTask, expected: _Expected, generation: int) -> AsyncResult:
        """After the broker confirmed a task's publish on the reply path ``generation``."""
        pending = expected.pending
        if pending is not None and not expected.queue:
            pending.generation = generation
            if generation != self._rpc.generation:
                pending.lost = "the connection it was sent on closed"
        result = AsyncResult(
            prepared.envelope.id,
            task=prepared.envelope.task,
            backend=expected.backend,
            pending=pending,
            links=self._links,
        )
        publish_hooks(self._policy.hooks, "after_publish", [prepared], [result])
        if self._policy.send_events:
            self._send_event(sent_event(self.preparer.prefix, prepared))
        return result

    def _send_event(self, message: OutgoingMessage) -> None:
        async def publish() -> None:
            try:
                await self._rpc.publish_plain(message, timeout=self.confirm_timeout)
            except Exception as exc:  # an event is never worth an error in the caller
                log.debug("task.sent event not published: %s", exc)

        task = asyncio.ensure_future(publish())
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    def _queue_results(self, queue: str) -> _AsyncQueueResults:
        results = self._queues.get(queue)
        if results is None:
            results = self._queues[queue] = _AsyncQueueResults(self, queue)
        return results

    def result_from_queue(self, task_id: str, queue: str) -> AsyncResult:
        """A handle on ``task_id``'s result in a durable result queue (``await r.aget()``)."""
        results = self._queue_results(queue)
        pending = PendingResult(task_id, None)
        results.router.add(pending)
        return AsyncResult(task_id, backend=results, pending=pending, links=self._links)

    # -- waiting over direct reply-to (ResultBackend) ----------------------------------------

    async def await_(self, pending: PendingResult, timeout: float | None) -> None:
        if pending.event is None:
            pending.event = asyncio.Event()
        if pending.settled:
            return
        self._rpc.expect_replies(pending.id, pending.task, pending.state.value)
        with contextlib.suppress(TimeoutError):
            while not pending.settled:  # intermediate replies set the event too
                pending.event.clear()
                await asyncio.wait_for(pending.event.wait(), timeout)

    def wait(self, pending: PendingResult, timeout: float | None) -> None:
        if pending.settled:
            return
        self._rpc.expect_replies(pending.id, pending.task, pending.state.value)
        _wait_from_thread(self._loop, self.await_(pending, timeout))

    def refresh(self, pending: PendingResult) -> None:
        return None


class _AsyncQueueResults:
    """Results collected from one durable result queue on the async producer."""

    def __init__(self, producer: AsyncProducer, queue: str) -> None:
        self.producer = producer
        self.queue = queue
        self.router = ReplyRouter()

    async def _poll(self) -> None:
        wanted = self.router.wanted()
        if wanted:
            for correlation_id, body in await self.producer._rpc.collect(self.queue, wanted):
                self.router.dispatch(correlation_id, body)

    async def await_(self, pending: PendingResult, timeout: float | None) -> None:
        deadline = deadline_after(timeout)
        pause = 0.005
        await self._poll()
        if not pending.settled:
            self.producer._rpc.expect_replies(pending.id, pending.task, pending.state.value)
        while True:
            if pending.settled:
                return
            left = remaining(deadline)
            if left is not None and left <= 0:
                return
            await asyncio.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, 0.25)
            await self._poll()

    def wait(self, pending: PendingResult, timeout: float | None) -> None:
        _wait_from_thread(self.producer._loop, self.await_(pending, timeout))

    def refresh(self, pending: PendingResult) -> None:
        return None


def _wait_from_thread(loop: asyncio.AbstractEventLoop | None, coro: Any) -> None:
    """``get()`` on an async producer's result: fine from another thread, never on its loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is None or loop.is_closed() or running is loop:
        coro.close()
        raise ConfigError(
            "this result belongs to an async producer: use `await result.aget(timeout=...)`"
        )
    asyncio.run_coroutine_threadsafe(coro, loop).result()
