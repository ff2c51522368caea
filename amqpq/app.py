"""The App: tasks, topology and settings in one object, and the composition root of sending.

The App builds what sends work and hands each piece only what it needs: the
producers get a :class:`~amqpq.producer.SendContext` (the preparer over the
registry and the topology, the publish policy, the links of result handles)
and a transport built from the URL; tasks get a
:class:`~amqpq.registry.TaskSender`; result handles get
:class:`~amqpq.rpc.ResultLinks` (revoke, result conversion). Nothing below the
App imports it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from amqpq.builtin_tasks import register_builtin_tasks
from amqpq.canvas import Signature, use_default_senders
from amqpq.errors import ConfigError
from amqpq.registry import Task, TaskOptions, TaskRegistry, TaskSender, task_name_for
from amqpq.settings import Settings, load_settings
from amqpq.topology.loader import DEFAULT_SOURCE, load_topology, resolve_topology
from amqpq.topology.models import Topology

if TYPE_CHECKING:
    from amqpq.producer import AsyncProducer, Producer, SendContext
    from amqpq.results import ResultStore
    from amqpq.rpc import AsyncResult, ResultBackend, ResultLinks

__all__ = ["App", "current_app", "shared_task"]

log = logging.getLogger("amqpq.app")

_CLOSE_AT_SHUTDOWN_TIMEOUT = 5.0  # seconds

P = ParamSpec("P")
R = TypeVar("R")
HookT = TypeVar("HookT", bound=Callable[..., Any])


def _hook_decorator(name: str) -> Callable[[App, HookT], HookT]:
    """An App method that registers a hook: ``@app.on_task_success def f(**kw): ...``."""

    def register(self: App, func: HookT) -> HookT:
        self.hooks.setdefault(name, []).append(func)
        return func

    register.__name__ = f"on_{name}"
    register.__doc__ = f"Register a ``{name}`` hook (see docs/operations.md#hooks); returns it."
    register._amqpq_hook_decorator = True  # type: ignore[attr-defined]
    return register


class App:
    """``App("tasks")`` reads ``amqpq.yaml`` (or ``AMQPQ_TOPOLOGY``) and ``AMQPQ_URL``.

    Everything is explicit and per instance: no module-level broker singletons.
    Connections open lazily on first use, one per process (re-opened after a fork).
    """

    def __init__(
        self,
        main: str | None = None,
        *,
        settings: Settings | None = None,
        url: str | None = None,
        topology: Topology | Path | str | None = None,
        result_backend: str | None = None,
        result_expires: float | None = None,
    ) -> None:
        self.main = main
        self.settings = settings or load_settings(url=url)
        self.registry = TaskRegistry()
        self._topology_source = topology
        self._topology: Topology | None = topology if isinstance(topology, Topology) else None
        self._topology_from = "<topology given in code>" if self._topology is not None else ""
        # Where amqpq.yaml is looked for before ./amqpq.yaml: beside the module creating
        # the App, so a script run from another folder finds the project's file.
        self._home = _creator_folder(sys._getframe(1), main)
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._producer_pid = 0
        self._aproducers: dict[asyncio.AbstractEventLoop, AsyncProducer] = {}
        self._closers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._injected: tuple[Producer, AsyncProducer] | None = None
        self._hooks: dict[str, list[Callable[..., Any]]] = {}
        self._send_events: bool | None = None
        self._send_context: SendContext | None = None
        self._sender = TaskSender(producer=lambda: self.producer, aproducer=self.aproducer)
        register_builtin_tasks(self.registry, self._sender)
        # Result store (docs/results.md): opened on first use, from the argument or
        # AMQPQ_RESULT_BACKEND; ``result_expires`` likewise.
        self._result_backend = result_backend
        self._result_expires = result_expires
        self._result_store: ResultStore | None = None
        _shared.app_created(self)

    @property
    def send_context(self) -> SendContext:
        """What this App's producers are built with (tests build producers with it too).

        Built on first use: a worker process that never sends does not import the
        producers, results and revocations (nor hold them in memory).
        """
        context = self._send_context
        if context is None:
            from amqpq.producer import PublishPolicy, SendContext, TaskPreparer
            from amqpq.rpc import ResultLinks

            context = self._send_context = SendContext(
                preparer=TaskPreparer(self.registry, lambda: self.topology),
                policy=PublishPolicy(self._hooks, send_events=self.send_events),
                links=ResultLinks(
                    revoke=self._revoke,
                    arevoke=self._arevoke,
                    result_from_wire=self._result_from_wire,
                ),
            )
        return context

    @property
    def hooks(self) -> dict[str, list[Callable[..., Any]]]:
        """Hook name -> callables, filled by the ``on_*`` decorators (or by hand)."""
        return self._hooks

    @hooks.setter
    def hooks(self, value: dict[str, list[Callable[..., Any]]]) -> None:
        self._hooks = value
        if self._send_context is not None:
            self._send_context.policy.hooks = value

    @property
    def send_events(self) -> bool:
        """Publish a ``task.sent`` event for each task sent (``AMQPQ_EVENTS=1``)."""
        if self._send_context is not None:
            return self._send_context.policy.send_events
        if self._send_events is None:
            from amqpq.events import events_enabled_by_default

            self._send_events = events_enabled_by_default()
        return self._send_events

    @send_events.setter
    def send_events(self, value: bool) -> None:
        self._send_events = value
        if self._send_context is not None:
            self._send_context.policy.send_events = value

    def __repr__(self) -> str:
        return f"<App {self.main or '?'}: {len(self.registry)} tasks>"

    # -- topology ---------------------------------------------------------------------------

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            self._topology = self._load_topology()
        return self._topology

    @property
    def topology_source(self) -> str:
        """The file the topology was read from (absolute), or ``<built-in default topology>``.

        Looked up in this order: ``App(topology=...)``, ``AMQPQ_TOPOLOGY``,
        ``amqpq.yaml`` beside the module that created the App, ``./amqpq.yaml``.
        """
        self.topology  # noqa: B018  (loads it, which records where it came from)
        return self._topology_from

    def _load_topology(self) -> Topology:
        source = self._topology_source
        if isinstance(source, str | Path):
            where, topology = str(source), load_topology(Path(source))
        else:
            where, topology = resolve_topology(self.settings.named_topology(), beside=self._home)
        if where == DEFAULT_SOURCE:
            self._topology_from = where
            looked = f"{self._home / 'amqpq.yaml'} and " if self._home is not None else ""
            log.warning(
                "no topology file (looked for %s./amqpq.yaml; none named by topology= or "
                "AMQPQ_TOPOLOGY): using the built-in default topology (exchange amqpq.tasks, "
                "queue default)",
                looked,
            )
        else:
            self._topology_from = os.path.abspath(where)
            log.info("App %s: topology from %s", self.main or "?", self._topology_from)
        return topology

    # -- hooks ------------------------------------------------------------------------------
    # Each is called with keyword arguments; a hook that raises is logged and ignored.

    on_worker_start = _hook_decorator("worker_start")
    """``worker=``: in each worker process, once it consumes."""
    on_worker_stop = _hook_decorator("worker_stop")
    """``worker=``: in each worker process, after it stopped consuming and closed."""
    on_task_prerun = _hook_decorator("task_prerun")
    """``request=, task=``: where the task runs, just before it."""
    on_task_postrun = _hook_decorator("task_postrun")
    """``request=, task=, state=, result=``: where the task runs, after it (any outcome)."""
    on_task_success = _hook_decorator("task_success")
    """``request=, task=, result=``: where the task runs, after it returned."""
    on_task_failure = _hook_decorator("task_failure")
    """``request=, task=, exception=``: where the task runs, after it raised."""
    on_task_retry = _hook_decorator("task_retry")
    """``request=, task=, countdown=, error=``: in the worker process, once the retry is scheduled."""
    on_before_publish = _hook_decorator("before_publish")
    """``envelope=, exchange=, routing_key=, headers=``: before a task is published; may add
    to ``headers``."""
    on_after_publish = _hook_decorator("after_publish")
    """``envelope=, exchange=, routing_key=, result=``: once the broker confirmed a task."""
    # Short names, as in the brief of the issue: ``@app.before_publish``.
    before_publish = on_before_publish
    after_publish = on_after_publish
    # Celery's signal names, for code moved from Celery (docs/guide.md, "From Celery").
    on_worker_init = on_worker_start
    on_worker_ready = on_worker_start
    on_worker_shutdown = on_worker_stop
    on_before_task_publish = on_before_publish
    on_after_task_publish = on_after_publish

    def hooks_for(self, name: str) -> list[Callable[..., Any]]:
        """The registered hooks of ``name`` (empty list when none)."""
        return self.hooks.get(name) or []

    # -- tasks ------------------------------------------------------------------------------

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, func: None = None, /, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self, func: Callable[P, R] | None = None, /, *, name: str | None = None, **options: Any
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a task: ``@app.task`` or ``@app.task(name=..., max_retries=5, bind=True)``."""

        def register(function: Callable[P, R]) -> Task[P, R]:
            task_name = name or task_name_for(function, self.main)
            try:
                task_options = TaskOptions(name=task_name, **options)
            except TypeError as exc:
                raise ConfigError(f"task {task_name}: {exc}") from exc
            task: Task[P, R] = Task(function, task_options, self._sender)
            self.registry.add(task)
            return task

        if func is not None:
            return register(func)
        return register

    @property
    def senders(self) -> TaskSender:
        """How this App's tasks and signatures find its producers."""
        return self._sender

    def signature(
        self,
        name: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        immutable: bool = False,
    ) -> Signature:
        """A signature by task name that sends through this App (docs/workflows.md)."""
        return Signature(name, args, kwargs, options, immutable=immutable, senders=self._sender)

    def set_current(self) -> App:
        """Make this the App that ``@shared_task`` tasks send through in this process.

        ``amqpq worker -A`` does it for the App it loads; a process that creates one
        App needs nothing; one that creates several calls it on the one to use.
        """
        _shared.current = self
        return self

    # -- sending ----------------------------------------------------------------------------

    @property
    def producer(self) -> Producer:
        """The process's synchronous producer (pika), created on first use, thread-safe."""
        injected = self._injected
        if injected is not None:
            return injected[0]
        with self._lock:
            if self._producer is None or self._producer_pid != os.getpid():
                # The producer and pika are loaded by the first sync send, not with the App.
                from amqpq.producer import Producer
                from amqpq.transport.blocking import BlockingBroker

                self._producer = Producer(self.send_context, BlockingBroker(self.settings))
                self._producer_pid = os.getpid()
            return self._producer

    def aproducer(self) -> AsyncProducer:
        """The asyncio producer (aio-pika) of the running event loop."""
        injected = self._injected
        if injected is not None:
            return injected[1]
        loop = asyncio.get_running_loop()
        producer = self._aproducers.get(loop)
        if producer is None:
            for stale in [lp for lp in self._aproducers if lp.is_closed()]:
                del self._aproducers[stale]
                self._closers.pop(stale, None)
            # aio-pika is loaded by the first async send, not by importing the App.
            from amqpq.producer import AsyncProducer
            from amqpq.transport.aio import AsyncSendChannel

            producer = AsyncProducer(self.send_context, AsyncSendChannel(self.settings))
            self._aproducers[loop] = producer
            self._closers[loop] = loop.create_task(
                self._close_at_loop_shutdown(loop, producer),
                name=f"amqpq: close {self.main or 'the App'}'s async producer at loop shutdown",
            )
        return producer

    async def _close_at_loop_shutdown(
        self, loop: asyncio.AbstractEventLoop, producer: AsyncProducer
    ) -> None:
        """Wait until the loop shuts down, then close ``producer`` (``asyncio.run`` exits clean).

        ``asyncio.run`` cancels every task of its loop once the main coroutine returned,
        then closes the loop: a connection left open there ends with pending tasks
        destroyed and "Event loop is closed" at exit. This task is cancelled with the
        others, and closes the producer before it ends. ``aclose()`` cancels it first.
        """
        try:
            await loop.create_future()  # never done: only cancellation ends the wait
        except asyncio.CancelledError:
            if self._aproducers.get(loop) is producer:
                del self._aproducers[loop]
                self._closers.pop(loop, None)
                try:
                    # Bounded: a broker that stopped answering must not hang the exit.
                    await asyncio.wait_for(producer.close(), _CLOSE_AT_SHUTDOWN_TIMEOUT)
                except Exception:
                    log.debug("closing the async producer at loop shutdown failed", exc_info=True)
            raise

    def use_producers(self, producers: tuple[Producer, AsyncProducer] | None) -> None:
        """Send through these (sync, async) producers instead of the broker's; None undoes it.

        ``amqpq.testing`` installs producers over its memory transport here.
        """
        self._injected = producers

    def send_task(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send a task by name, without importing its code: ``app.send_task("tasks.add", [3, 4])``."""
        return self.producer.send_task(name, args, kwargs or {}, **options)

    async def asend_task(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        return await self.aproducer().send_task(name, args, kwargs or {}, **options)

    # -- what result handles reach (ResultLinks) --------------------------------------------

    def _revoke(self, ids: Sequence[str], terminate: bool) -> None:
        from amqpq.revocations import revoke

        revoke(
            self.producer.publish_messages,
            ids,
            terminate=terminate,
            prefix=self.topology.infrastructure.prefix,
        )

    async def _arevoke(self, ids: Sequence[str], terminate: bool) -> None:
        from amqpq.revocations import arevoke

        await arevoke(
            self.aproducer().publish_message,
            ids,
            terminate=terminate,
            prefix=self.topology.infrastructure.prefix,
        )

    def _result_from_wire(self, task: str, value: Any) -> Any:
        found = self.registry.find(task)
        return found.parameters.result_from_wire(value) if found is not None else value

    # -- results by task id (a result store) ------------------------------------------------

    @property
    def result_store(self) -> ResultStore | None:
        """The result store ``result_backend=`` (or ``AMQPQ_RESULT_BACKEND``) names, if any."""
        store = self._result_store
        if store is None:
            url = self._result_backend or self.settings.result_backend
            if url:
                from amqpq.results import open_store

                with self._lock:
                    if self._result_store is None:
                        self._result_store = open_store(url)
                store = self._result_store
        return store

    def use_result_store(self, store: ResultStore | None) -> None:
        """Keep results in this store (``amqpq.testing`` installs one in memory)."""
        self._result_store = store

    @property
    def result_expires(self) -> float:
        """Seconds a stored result is kept unless the task or the call says (default 1 day)."""
        if self._result_expires is not None:
            return self._result_expires
        return self.settings.result_expires

    def AsyncResult(self, task_id: str) -> AsyncResult:  # Celery's name for it
        """The result of ``task_id`` read from the result store, from any process."""
        from amqpq.rpc import AsyncResult

        backend, links = self.result_parts(task_id)
        return AsyncResult(task_id, backend=backend, links=links)

    def result_parts(self, task_id: str) -> tuple[ResultBackend, ResultLinks | None]:
        """What a handle made from an id reads (``AsyncResult(task_id, app=app)``)."""
        store = self.result_store
        if store is None:
            raise ConfigError(
                f"result of task {task_id}: this App has no result store, so no process can "
                "read results by id; set result_backend= or AMQPQ_RESULT_BACKEND "
                "(redis://... or postgresql://..., see docs/results.md)"
            )
        from amqpq.results.handle import StoreBackend

        return StoreBackend(store), self.send_context.links

    def close(self) -> None:
        """Close the synchronous producer's connection (async ones: ``await app.aclose()``)."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None and self._producer_pid == os.getpid():
            producer.close()
        if self._result_store is not None:
            self._result_store.close()

    async def aclose(self) -> None:
        """Close the running loop's async producer (``asyncio.run`` does it at its end too)."""
        loop = asyncio.get_running_loop()
        producer = self._aproducers.pop(loop, None)
        closer = self._closers.pop(loop, None)
        if closer is not None:
            closer.cancel()
        if producer is not None:
            await producer.close()
        if self._result_store is not None:
            await self._result_store.aclose()


def _creator_folder(frame: Any, main: str | None) -> Path | None:
    """The folder of the module that created the App (None for amqpq's own modules).

    The creating frame's ``__file__``; without one (``python -c``, a notebook) the
    file of the module named ``main``, else of ``__main__``.
    """
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # App subclasses' super().__init__ calls from this module
    module_name = frame.f_globals.get("__name__", "") if frame is not None else ""
    if module_name == "amqpq" or module_name.startswith("amqpq."):
        return None  # the CLI's own Apps: the current folder, or the file named by -f
    file = frame.f_globals.get("__file__") if frame is not None else None
    for name in (main, "__main__"):
        if file:
            break
        module = sys.modules.get(name) if name else None
        file = getattr(module, "__file__", None)
    return Path(file).resolve().parent if isinstance(file, str) else None


# -- shared tasks -------------------------------------------------------------------------------


class _SharedTasks:
    """The process's Apps and its ``@shared_task`` tasks, registered in every App.

    Apps are held weakly (a test suite creates many); the current one (``set_current``)
    strongly, as the App a worker loaded lives as long as the process.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.apps: weakref.WeakSet[App] = weakref.WeakSet()
        self.tasks: list[Task[Any, Any]] = []
        self.current: App | None = None

    def app_created(self, app: App) -> None:
        with self.lock:
            self.apps.add(app)
            tasks = list(self.tasks)
        for task in tasks:
            _register_shared(app, task)

    def task_declared(self, task: Task[Any, Any]) -> None:
        with self.lock:
            self.tasks.append(task)
            apps = list(self.apps)
        for app in apps:
            _register_shared(app, task)

    def app(self, task: str | None) -> App:
        current = self.current
        if current is not None:
            return current
        with self.lock:
            apps = list(self.apps)
        if len(apps) == 1:
            return apps[0]
        if not apps:
            who = f"shared task {task}" if task else "current_app()"
            raise ConfigError(
                f"{who}: no App was created in this process; create one "
                "(app = App(...)) in a module the process imports before sending"
            )
        names = ", ".join(sorted(a.main or "?" for a in apps))
        who = f"shared task {task}" if task else "current_app()"
        raise ConfigError(
            f"{who}: this process created {len(apps)} Apps ({names}); call "
            "app.set_current() on the one shared tasks send through"
        )


_shared = _SharedTasks()
# Signatures made by name without an App send through the current App, as shared tasks do.
use_default_senders(
    TaskSender(
        producer=lambda: _shared.app(None).producer,
        aproducer=lambda: _shared.app(None).aproducer(),
    )
)


def _register_shared(app: App, task: Task[Any, Any]) -> None:
    # An App's own task of the same name wins (registering would refuse the duplicate
    # and fail an unrelated App): the shared one is then not run by that App's workers.
    if task.name not in app.registry:
        app.registry.add(task)


def current_app() -> App:
    """The App ``@shared_task`` tasks send through: the one made current
    (``amqpq worker -A``'s App, or ``app.set_current()``), else the only App of the
    process. :class:`ConfigError` when there is none, or several and none is current."""
    return _shared.app(None)


@overload
def shared_task(func: Callable[P, R], /) -> Task[P, R]: ...


@overload
def shared_task(
    func: None = None, /, *, name: str | None = None, **options: Any
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def shared_task(
    func: Callable[P, R] | None = None, /, *, name: str | None = None, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """A task that needs no App to be declared (reusable apps, Django apps), as in Celery.

    It is registered in every App of the process, those created before and after it,
    and sends through :func:`current_app` when called (``.delay``...); declaring it
    opens no connection. Options as :meth:`App.task`.
    """

    def declare(function: Callable[P, R]) -> Task[P, R]:
        task_name = name or task_name_for(function, None)
        try:
            task_options = TaskOptions(name=task_name, **options)
        except TypeError as exc:
            raise ConfigError(f"task {task_name}: {exc}") from exc
        sender = TaskSender(
            producer=lambda: _shared.app(task_name).producer,
            aproducer=lambda: _shared.app(task_name).aproducer(),
        )
        task: Task[P, R] = Task(function, task_options, sender)
        _shared.task_declared(task)
        return task

    if func is not None:
        return declare(func)
    return declare
