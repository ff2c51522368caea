"""The worker process: declare, consume, run, and shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from amqpq.app import App
from amqpq.errors import AmqpqError, ConfigError
from amqpq.settings import Settings
from amqpq.topology.infra import work_queues
from amqpq.topology.models import Topology
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.base import ConfirmingPublisher, Consumer, Delivery
from amqpq.transport.consume import AioConfirmingPublisher, AioQueueConsumer
from amqpq.wire import control_consumer_tag, worker_consumer_tag
from amqpq.worker.consumer import MessageHandler
from amqpq.worker.deadletter import DeadLetterer, dead_letter_targets
from amqpq.worker.hooks import Hooks
from amqpq.worker.pools import LocalPool, Pool, ProcessPool
from amqpq.worker.ratelimit import RateLimiter
from amqpq.worker.redelivery import RedeliveryBound, bounded_queues
from amqpq.worker.stats import WorkerStats

if TYPE_CHECKING:
    from amqpq.control import ControlServer
    from amqpq.events import EventPublisher
    from amqpq.metrics import WorkerMetrics
    from amqpq.revocations import Revocations
    from amqpq.worker.consumer import TaskObserver

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "PoolKind",
    "Worker",
    "WorkerOptions",
    "default_concurrency",
    "resolve_queues",
]

log = logging.getLogger("amqpq.worker")

PoolKind = Literal["threads", "processes", "async", "solo"]
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024


def default_concurrency(pool: PoolKind) -> int:
    """Execution slots when ``-c`` is not given: one per core for processes, one for solo,
    else 8 / 100."""
    if pool == "processes":
        return os.cpu_count() or 1
    if pool == "solo":
        return 1
    if pool == "async":
        return 100
    return 8


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    app_spec: str
    queues: tuple[str, ...] = ()
    pool: PoolKind = "threads"
    concurrency: int | None = None
    grace: float = 30.0
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    declare: bool = True
    cwd: str | None = None
    events: bool = False
    """Publish task and worker events to ``amqpq.events`` (``--events``)."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (+ the worker's index under a supervisor)."""
    heartbeat: float = 10.0
    """Seconds between ``worker.heartbeat`` events."""

    @property
    def slots(self) -> int:
        return self.concurrency or default_concurrency(self.pool)


def resolve_queues(topology: Topology, requested: Sequence[str]) -> list[str]:
    """``-Q`` as given (each must be in the topology), else every work queue of the file."""
    if requested:
        unknown = [q for q in requested if topology.queue(q) is None]
        if unknown:
            known = ", ".join(q.name for q in topology.queues) or "none"
            raise ConfigError(f"-Q {','.join(unknown)}: not in the topology (its queues: {known})")
        return list(dict.fromkeys(requested))
    queues = [q.name for q in work_queues(topology)]
    if not queues:
        raise ConfigError("the topology has no work queue to consume (classic or quorum)")
    return queues


class Worker:
    """``amqpq worker``: consumes ``queues`` and runs their tasks in a pool.

    ``run()`` returns the exit code: 0 after a graceful stop, 1 when stopped
    before the in-flight tasks finished (second signal or grace period over).
    """

    def __init__(
        self, app: App, options: WorkerOptions, *, settings: Settings, topology: Topology
    ) -> None:
        if options.slots < 1:
            raise ConfigError("concurrency must be at least 1")
        if options.pool == "solo" and options.slots != 1:
            raise ConfigError(
                f"--pool solo runs one task at a time: -c {options.slots} needs --pool threads "
                "(or --workers N for N solo workers)"
            )
        self.app = app
        self.options = options
        self.settings = settings
        self.topology = topology
        self.queues = resolve_queues(topology, options.queues)
        self.hostname = socket.gethostname()
        self.name = f"{self.hostname}:{os.getpid()}"
        self.stats = WorkerStats()
        self.hooks = Hooks(app)
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._handler: MessageHandler | None = None
        self._redeliveries: RedeliveryBound | None = None
        self._consumer: Consumer | None = None
        self._pool: Pool | None = None
        self._broker: AsyncBroker | None = None
        self._started = time.monotonic()
        self.revocations: Revocations | None = None
        self.events: EventPublisher | None = None
        self.metrics: WorkerMetrics | None = None
        self._control: ControlServer | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def _inflight(self) -> set[asyncio.Task[None]]:
        return self._consumer.tasks if self._consumer is not None else set()

    def consumer_tag(self, queue: str) -> str:
        return worker_consumer_tag(self.hostname, os.getpid(), queue)

    def _make_pool(self) -> Pool:
        slots = self.options.slots
        if self.options.pool == "processes":
            return ProcessPool(self.options.app_spec, slots, cwd=self.options.cwd or os.getcwd())
        # Sync tasks in the async pool still need threads; a few suffice for occasional ones.
        # Solo keeps one, for tasks with time limits (a limit needs the loop free to fire).
        threads = slots if self.options.pool == "threads" else min(slots, 16)
        return LocalPool(
            self.options.pool,
            slots,
            threads,
            self.hooks,
            stall_warning=self.settings.heartbeat,
        )

    def request_stop(self, reason: str = "requested") -> None:
        """First call: warm shutdown. Second call: stop now."""
        if not self._stop.is_set():
            log.info(
                "%s: warm shutdown, no new tasks; finishing %d in-flight within %.0fs "
                "(again to stop now)",
                reason,
                len(self._inflight),
                self.options.grace,
            )
            self._stop.set()
        elif not self._force.is_set():
            log.warning(
                "%s again: stopping now; %d unacked messages go back to their queues",
                reason,
                len(self._inflight),
            )
            self._force.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    async def _handle(self, delivery: Delivery) -> None:
        assert self._handler is not None
        try:
            # Classic queues have no delivery limit: count redeliveries here (redelivery.py).
            if self._redeliveries is None or await self._redeliveries.admit(delivery):
                await self._handler(delivery)
        except Exception:
            # A bug or a broker error mid-way: never let it stop the worker. Requeue once;
            # if it comes back and fails again, dead-letter it instead of looping.
            log.exception("unexpected error handling a message queue=%s", delivery.queue)
            if not delivery.settled:
                if delivery.redelivered:
                    await self._dead_letter_broken(delivery)
                else:
                    await delivery.nack(requeue=True)

    async def _dead_letter_broken(self, delivery: Delivery) -> None:
        handler = self._handler
        assert handler is not None
        try:
            await handler.deadletters.dead_letter(
                delivery, "worker_error", "WorkerError", "the worker failed twice on this message"
            )
        except Exception:
            log.exception("dead-lettering a broken message failed")
            await delivery.reject(requeue=False)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        options = self.options
        if options.declare:
            from amqpq.transport.declare import declare_topology

            await declare_topology(self.settings, self.topology)
        broker = self._broker = AsyncBroker(self.settings, "worker")
        pool = self._pool = self._make_pool()
        consumer: Consumer | None = None
        replies = AioConfirmingPublisher(broker)
        republisher = AioConfirmingPublisher(broker)
        forced = False
        try:
            await broker.connect()
            await pool.start()
            infra = self.topology.infrastructure
            observers = self._operations_setup(broker, infra.prefix, infra.operations)
            self._handler = MessageHandler(
                registry=self.app.registry,
                pool=pool,
                replies=replies,
                republisher=republisher,
                deadletters=DeadLetterer(
                    republisher, dead_letter_targets(self.topology, self.queues)
                ),
                stats=self.stats,
                hooks=self.hooks,
                concurrency=pool.size,
                worker_name=self.name,
                max_body_size=options.max_body_size,
                delay_prefix=infra.prefix,
                delay_enabled=infra.delay,
                revoked=self.revocations,
                observers=observers,
                rate_limiter=RateLimiter(),
            )
            # Consume while the revocations stream is read and the control queue set up
            # (a round trip or more each): the handler holds every task until the
            # revocations are read (Revocations.wait_ready).
            operations = asyncio.ensure_future(self._operations_start(republisher, infra.prefix))
            try:
                limits = bounded_queues(self.topology, self.queues)
                if limits:
                    self._redeliveries = RedeliveryBound(
                        republisher, self._handler.deadletters, limits, self.stats
                    )
                consumer = self._consumer = AioQueueConsumer(
                    broker, prefetch=pool.size, handler=self._handle
                )
                if not self._stop.is_set():
                    await consumer.start(self.queues, self.consumer_tag)
            except BaseException:
                operations.cancel()
                await asyncio.gather(operations, return_exceptions=True)
                raise
            await operations
            log.info(
                "worker started app=%s tasks=%s queues=%s pool=%s concurrency=%d prefetch=%d "
                "broker=%s connection=%r",
                self.app.main or options.app_spec,
                ",".join(self.app.registry.names()) or "-",
                ",".join(self.queues),
                pool.kind,
                pool.size,
                pool.size,
                self.settings.primary.display,
                broker.name,
            )
            if self.events is not None:
                await self.events.start(**self._identity())
            self._in_background(self._check_consumer_timeout())
            self.hooks("worker_start", worker=self)
            await self._stop.wait()
            if self._handler is not None:
                self._handler.stopping = True
            await consumer.cancel()
            forced = not await self._drain(loop)
        finally:
            if forced or self._force.is_set():
                forced = True
                pool.terminate()
            else:
                await pool.close()
            await self._operations_close()
            await replies.close()
            await republisher.close()
            if consumer is not None:
                await consumer.close()
            await broker.close()
        self.hooks("worker_stop", worker=self)
        log.info(
            "worker stopped%s stats=%s",
            " before its tasks finished" if forced else "",
            self.stats.snapshot(),
        )
        return 1 if forced else 0

    # -- operations: control, revocations, events, metrics ------------------------------------

    def _operations_setup(
        self, broker: AsyncBroker, prefix: str, enabled: bool
    ) -> list[TaskObserver]:
        observers: list[TaskObserver] = []
        options = self.options
        if enabled:
            from amqpq.revocations import Revocations

            self.revocations = Revocations(
                broker, prefix=prefix, worker_name=self.name, on_terminate=self._terminate
            )
        if options.events and enabled:
            from amqpq.events import EventPublisher

            self.events = EventPublisher(
                broker,
                prefix=prefix,
                worker_name=self.name,
                heartbeat=options.heartbeat,
                heartbeat_fields=self._heartbeat_fields,
            )
            observers.append(self.events)
        elif options.events:
            log.warning("--events ignored: infrastructure.operations is off in the topology")
        if options.metrics_port is not None:
            from amqpq.metrics import WorkerMetrics

            index = int(os.environ.get("AMQPQ_WORKER_INDEX", "0") or 0)
            self.metrics = WorkerMetrics(self.name, self._metric_values)
            self.metrics.serve(options.metrics_port + index)
            observers.append(self.metrics)
        return observers

    async def _operations_start(self, publisher: ConfirmingPublisher, prefix: str) -> None:
        """Revocations first (tasks wait until they are read), then the control queue."""
        if not self.topology.infrastructure.operations:
            return
        assert self._broker is not None
        if self.revocations is not None:
            await self.revocations.start(publisher)
        from amqpq.control import ControlServer, control_queue_name

        control = ControlServer(
            self._broker,
            prefix=prefix,
            worker_name=self.name,
            queue=control_queue_name(prefix, self.hostname, os.getpid()),
            handlers={"ping": self._ping, "inspect": self._inspect, "revoke": self._revoke},
        )
        try:
            await control.start(consumer_tag=control_consumer_tag(self.hostname, os.getpid()))
        except AmqpqError as exc:
            log.warning("control commands (amqpq inspect, revoke) are off in this worker: %s", exc)
            return
        self._control = control

    async def _operations_close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._control is not None:
            await self._control.close()
        if self.revocations is not None:
            await self.revocations.close()
        if self.events is not None:
            stats = self.stats
            await self.events.close(
                **self._identity(), processed=stats.succeeded + stats.failed + stats.retried
            )
        if self.metrics is not None:
            self.metrics.close()

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _identity(self) -> dict[str, Any]:
        pool = self._pool
        return {
            "hostname": self.hostname,
            "pid": os.getpid(),
            "app": self.app.main or self.options.app_spec,
            "queues": list(self.queues),
            "pool": pool.kind if pool else self.options.pool,
            "concurrency": pool.size if pool else self.options.slots,
        }

    def _heartbeat_fields(self) -> Mapping[str, Any]:
        stats = self.stats
        return {
            "active": stats.active,
            "processed": stats.succeeded + stats.failed + stats.retried,
            "uptime": round(time.monotonic() - self._started, 1),
        }

    def _metric_values(self) -> Mapping[str, Any]:
        stats = self.stats
        size = self._pool.size if self._pool else self.options.slots
        return {
            "active": stats.active,
            "received": stats.received,
            "reconnects": self._broker.reconnects if self._broker else 0,
            "prefetch": dict.fromkeys(self.queues, size),
            "dead_lettered": dict(stats.dead_lettered),
            "events_dropped": self.events.dropped if self.events else 0,
        }

    def inspect(self) -> dict[str, Any]:
        """What ``amqpq inspect`` shows for this worker."""
        stats = self.stats
        handler = self._handler
        now = time.monotonic()
        size = self._pool.size if self._pool else self.options.slots
        rejected = sum(
            count
            for reason, count in stats.dead_lettered.items()
            if reason not in ("failed", "max_retries_exceeded")
        )
        registry = self.app.registry
        return {
            "worker": self.name,
            **self._identity(),
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
            },
            "revocations": len(self.revocations) if self.revocations is not None else None,
            "events": self.events is not None,
            "metrics_port": self.metrics.port if self.metrics is not None else None,
        }

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
            "pool": self._pool.kind if self._pool else self.options.pool,
        }

    def _terminate(self, ids: Sequence[str]) -> None:
        handler = self._handler
        if handler is None:
            return
        for task_id in ids:
            if task_id in handler.active:
                how = handler.terminate(task_id)
                if how != "terminated":
                    log.warning("revoke --terminate of id=%s: %s", task_id, how)

    async def _check_consumer_timeout(self) -> None:
        """Warn about tasks whose time limit exceeds the broker's consumer_timeout."""
        from amqpq.worker.consumer_timeout import (
            DEFAULT_CONSUMER_TIMEOUT,
            broker_consumer_timeout,
            tasks_over,
        )

        if not tasks_over(self.app.registry, 0):
            # No task has a time limit: nothing to compare, so no HTTP client (~10 MiB and
            # ~0.1 s of CPU per worker process) and no management API call at start-up.
            return
        try:
            # Bounded: a management API slow to answer (a busy broker) must not hold back
            # the warning; RabbitMQ's default is the best guess then.
            limit, source = await asyncio.wait_for(
                asyncio.to_thread(broker_consumer_timeout, self.settings), 10.0
            )
        except TimeoutError:
            limit = DEFAULT_CONSUMER_TIMEOUT
            source = "RabbitMQ's default; the management API did not answer within 10s"
        except Exception:
            log.debug("consumer_timeout check failed", exc_info=True)
            return
        for name, task_limit in tasks_over(self.app.registry, limit):
            log.warning(
                "task %s has a time limit of %.0fs, longer than the broker's consumer_timeout "
                "of %.0fs (%s): RabbitMQ would close the channel and requeue the message while "
                "the task still runs; raise consumer_timeout (docs/workers.md) or lower the limit",
                name,
                task_limit,
                limit,
                source,
            )

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Wait for in-flight tasks until the grace period ends or a second signal; True if done."""
        deadline = loop.time() + self.options.grace
        while self._inflight:
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning(
                    "grace period of %.0fs over; %d tasks still running go back to their queues",
                    self.options.grace,
                    len(self._inflight),
                )
                return False
            if self._force.is_set():
                return False
            forcing = asyncio.ensure_future(self._force.wait())
            try:
                await asyncio.wait(
                    {*self._inflight, forcing},
                    timeout=remaining,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                forcing.cancel()
        return True
