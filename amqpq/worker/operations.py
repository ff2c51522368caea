"""A worker's operations side: revocations, control commands, events, metrics, inspect.

None of this runs tasks; it lets people see and steer a running worker
(``amqpq inspect``, ``amqpq revoke``, ``amqpq events``, Prometheus metrics, the
``worker.heartbeat`` events) and warns about time limits the broker would cut
short. :class:`~amqpq.worker.main.Worker` owns one :class:`WorkerOperations` and
calls it at each step of its lifecycle: :meth:`~WorkerOperations.setup` once
connected, :meth:`~WorkerOperations.start` while consuming starts,
:meth:`~WorkerOperations.online` once consuming, :meth:`~WorkerOperations.close`
at the end. The revocations, control, events and metrics modules are imported
only when used, so a worker without them starts without them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqpq.errors import AmqpqError
from amqpq.registry import TaskRegistry
from amqpq.settings import Settings
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.base import ConfirmingPublisher, ReplyPublisher
from amqpq.wire import control_consumer_tag
from amqpq.worker.consumer import MessageHandler
from amqpq.worker.fanout import TaskObserver
from amqpq.worker.options import WorkerOptions
from amqpq.worker.pools import Pool
from amqpq.worker.stats import WorkerStats

if TYPE_CHECKING:
    from amqpq.control import ControlServer
    from amqpq.events import EventPublisher
    from amqpq.metrics import WorkerMetrics
    from amqpq.revocations import Revocations

__all__ = ["REVOCATIONS_ROLE", "WorkerIdentity", "WorkerOperations", "package_version"]

log = logging.getLogger("amqpq.worker")

REVOCATIONS_ROLE = "worker-revocations"
"""The revocations reader's connection: ``amqpq worker-revocations <host>:<pid>``."""


@functools.cache
def package_version() -> str:
    """The installed amqpq's version, as ``amqpq --version`` prints it (start line, inspect)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("amqpq")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """Who a worker is, as inspect, events and metrics show it."""

    name: str  # hostname:pid
    hostname: str
    app: str
    queues: tuple[str, ...]


class WorkerOperations:
    """Revocations, control commands, events and metrics of one worker."""

    def __init__(
        self,
        identity: WorkerIdentity,
        options: WorkerOptions,
        *,
        settings: Settings,
        registry: TaskRegistry,
        prefix: str,
        enabled: bool,
        stats: WorkerStats,
    ) -> None:
        self.identity = identity
        self._options = options
        self._settings = settings
        self._registry = registry
        self._prefix = prefix
        self._enabled = enabled  # the topology's infrastructure.operations
        self._stats = stats
        self._started = time.monotonic()
        self._broker: AsyncBroker | None = None
        self._revocations_broker: AsyncBroker | None = None
        self._pool: Pool | None = None
        self._handler: MessageHandler | None = None
        self._replies: ReplyPublisher | None = None
        self.revocations: Revocations | None = None
        self.events: EventPublisher | None = None
        self.metrics: WorkerMetrics | None = None
        self._control: ControlServer | None = None
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    def setup(self, broker: AsyncBroker, pool: Pool) -> list[TaskObserver]:
        """Revocations, events and metrics for a connected broker; the task observers."""
        self._broker = broker
        self._pool = pool
        observers: list[TaskObserver] = []
        options = self._options
        if self._enabled:
            from amqpq.revocations import Revocations

            # A connection of its own: a stream that hiccups (its leader moving to another
            # node) costs the reader a reconnect, never the connection that carries acks.
            self._revocations_broker = AsyncBroker(self._settings, REVOCATIONS_ROLE)
            self.revocations = Revocations(
                self._revocations_broker,
                prefix=self._prefix,
                worker_name=self.identity.name,
                on_terminate=self._terminate,
            )
        if options.events and self._enabled:
            from amqpq.events import EventPublisher

            self.events = EventPublisher(
                broker,
                prefix=self._prefix,
                worker_name=self.identity.name,
                heartbeat=options.heartbeat,
                heartbeat_fields=self._heartbeat_fields,
            )
            observers.append(self.events)
        elif options.events:
            log.warning("--events ignored: infrastructure.operations is off in the topology")
        if options.metrics_port is not None:
            from amqpq.metrics import WorkerMetrics

            index = int(os.environ.get("AMQPQ_WORKER_INDEX", "0") or 0)
            self.metrics = WorkerMetrics(self.identity.name, self._metric_values)
            self.metrics.serve(options.metrics_port + index)
            observers.append(self.metrics)
        return observers

    def attach(self, handler: MessageHandler) -> None:
        """The handler whose running tasks inspect shows and revoke can terminate."""
        self._handler = handler

    async def start(self, publisher: ConfirmingPublisher, replies: ReplyPublisher) -> None:
        """Revocations first (tasks wait until they are read), then the control queue,
        answered through ``replies`` (the worker's reply connection)."""
        self._replies = replies
        if not self._enabled:
            return
        assert self._broker is not None
        if self.revocations is not None:
            await self.revocations.start(publisher)
        from amqpq.control import ControlServer, control_queue_name

        hostname, pid = self.identity.hostname, os.getpid()
        control = ControlServer(
            self._broker,
            prefix=self._prefix,
            worker_name=self.identity.name,
            queue=control_queue_name(self._prefix, hostname, pid),
            handlers={"ping": self._ping, "inspect": self._inspect, "revoke": self._revoke},
            replies=replies,
        )
        try:
            await control.start(consumer_tag=control_consumer_tag(hostname, pid))
        except AmqpqError as exc:
            log.warning("control commands (amqpq inspect, revoke) are off in this worker: %s", exc)
            return
        self._control = control

    async def abort_start(self) -> None:
        """Undo :meth:`start` after the connection dropped under it (the worker starts again)."""
        control, self._control = self._control, None
        if control is not None:
            await control.close()
        await self._close_revocations()

    async def _close_revocations(self) -> None:
        if self.revocations is not None:
            await self.revocations.close()
        if self._revocations_broker is not None:
            await self._revocations_broker.close()

    async def online(self) -> None:
        """Consuming: announce the worker, check time limits against consumer_timeout."""
        if self.events is not None:
            await self.events.start(**self._describe())
        from amqpq.worker.consumer_timeout import warn_about_long_tasks

        self._in_background(warn_about_long_tasks(self._registry, self._settings))

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._control is not None:
            await self._control.close()
        await self._close_revocations()
        if self.events is not None:
            stats = self._stats
            await self.events.close(
                **self._describe(), processed=stats.succeeded + stats.failed + stats.retried
            )
        if self.metrics is not None:
            self.metrics.close()

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- what a worker shows ------------------------------------------------------------------

    def _describe(self) -> dict[str, Any]:
        pool = self._pool
        return {
            "version": package_version(),
            "hostname": self.identity.hostname,
            "pid": os.getpid(),
            "app": self.identity.app,
            "queues": list(self.identity.queues),
            "pool": pool.kind if pool else self._options.pool,
            "concurrency": pool.size if pool else self._options.slots,
        }

    def _heartbeat_fields(self) -> Mapping[str, Any]:
        stats = self._stats
        return {
            "active": stats.active,
            "processed": stats.succeeded + stats.failed + stats.retried,
            "uptime": round(time.monotonic() - self._started, 1),
        }

    def _metric_values(self) -> Mapping[str, Any]:
        stats = self._stats
        size = self._pool.size if self._pool else self._options.slots
        return {
            "active": stats.active,
            "received": stats.received,
            "reconnects": self._broker.reconnects if self._broker else 0,
            "prefetch": dict.fromkeys(self.identity.queues, size),
            "dead_lettered": dict(stats.dead_lettered),
            "events_dropped": self.events.dropped if self.events else 0,
        }

    def inspect(self) -> dict[str, Any]:
        """What ``amqpq inspect`` shows for this worker."""
        stats = self._stats
        handler = self._handler
        now = time.monotonic()
        size = self._pool.size if self._pool else self._options.slots
        rejected = sum(
            count
            for reason, count in stats.dead_lettered.items()
            if reason not in ("failed", "max_retries_exceeded")
        )
        registry = self._registry
        return {
            "worker": self.identity.name,
            **self._describe(),
            "prefetch": size,
            "registered": registry.names(),
            "rate_limits": {
                name: task.options.rate_limit
                for name in registry.names()
                if (task := registry.find(name)) is not None and task.options.rate_limit
            },
            "active": [a.describe(now) for a in handler.active.values()] if handler else [],
            "stats": {
                "received": stats.received,
                "processed": stats.succeeded + stats.failed + stats.retried,
                "succeeded": stats.succeeded,
                "failed": stats.failed,
                "retried": stats.retried,
                "rejected": rejected,
                "revoked": stats.revoked,
                "requeued": stats.requeued,
                "dead_lettered": dict(stats.dead_lettered),
                "uptime": round(now - self._started, 1),
                "reconnects": self._broker.reconnects if self._broker else 0,
                # Direct replies not sent: their caller's connection had closed.
                "replies_skipped": self._replies.skipped if self._replies is not None else 0,
            },
            "revocations": len(self.revocations) if self.revocations is not None else None,
            "events": self.events is not None,
            "metrics_port": self.metrics.port if self.metrics is not None else None,
        }

    # -- control commands ---------------------------------------------------------------------

    async def _ping(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return {"pong": True}

    async def _inspect(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return self.inspect()

    async def _revoke(self, args: Mapping[str, Any]) -> dict[str, Any]:
        ids = [str(i) for i in args.get("ids") or []]
        terminate = bool(args.get("terminate"))
        if self.revocations is not None:
            self.revocations.add(ids)
        handler = self._handler
        running = [i for i in ids if handler is not None and i in handler.active]
        outcome: dict[str, str] = {}
        if terminate and handler is not None:
            # The stream record may have been read first and stopped it already.
            outcome = {
                i: "terminated" if i in handler.terminated_ids else handler.terminate(i)
                for i in ids
                if i in handler.active or i in handler.terminated_ids
            }
            running = sorted(set(running) | set(outcome))
        return {
            "revoked": ids,
            "running": running,
            "terminated": [i for i, how in outcome.items() if how == "terminated"],
            "not_terminated": {i: how for i, how in outcome.items() if how != "terminated"},
            "pool": self._pool.kind if self._pool else self._options.pool,
        }

    def _terminate(self, ids: Sequence[str]) -> None:
        """A revocation record with ``terminate`` (from the stream, maybe another worker's
        command): stop those of the ids that run here."""
        handler = self._handler
        if handler is None:
            return
        for task_id in ids:
            if task_id in handler.active:
                how = handler.terminate(task_id)
                if how != "terminated":
                    log.warning("revoke --terminate of id=%s: %s", task_id, how)
