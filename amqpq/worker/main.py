"""The worker process: declare, consume, run, and shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from amqpq.app import App
from amqpq.errors import ConfigError
from amqpq.settings import Settings
from amqpq.topology.infra import work_queues
from amqpq.topology.models import Topology
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.consume import ConfirmingPublisher, Delivery, QueueConsumer
from amqpq.worker.consumer import MessageHandler
from amqpq.worker.deadletter import DeadLetterer, dead_letter_targets
from amqpq.worker.hooks import Hooks
from amqpq.worker.pools import LocalPool, Pool, ProcessPool
from amqpq.worker.redelivery import RedeliveryBound, bounded_queues
from amqpq.worker.stats import WorkerStats

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "PoolKind",
    "Worker",
    "WorkerOptions",
    "default_concurrency",
    "resolve_queues",
]

log = logging.getLogger("amqpq.worker")

PoolKind = Literal["threads", "processes", "async"]
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024


def default_concurrency(pool: PoolKind) -> int:
    """Execution slots when ``-c`` is not given: one per core for processes, else 8 / 100."""
    if pool == "processes":
        return os.cpu_count() or 1
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
        self._consumer: QueueConsumer | None = None

    @property
    def _inflight(self) -> set[asyncio.Task[None]]:
        return self._consumer.tasks if self._consumer is not None else set()

    def consumer_tag(self, queue: str) -> str:
        return f"amqpq-worker.{self.hostname}.{os.getpid()}.{queue}"

    def _make_pool(self) -> Pool:
        slots = self.options.slots
        if self.options.pool == "processes":
            return ProcessPool(self.options.app_spec, slots, cwd=self.options.cwd or os.getcwd())
        # Sync tasks in the async pool still need threads; a few suffice for occasional ones.
        threads = slots if self.options.pool == "threads" else min(slots, 16)
        return LocalPool(self.options.pool, slots, threads, self.hooks)

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
        broker = AsyncBroker(self.settings, "worker")
        pool = self._make_pool()
        consumer: QueueConsumer | None = None
        replies = ConfirmingPublisher(broker)
        republisher = ConfirmingPublisher(broker)
        forced = False
        try:
            await broker.connect()
            await pool.start()
            infra = self.topology.infrastructure
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
            )
            limits = bounded_queues(self.topology, self.queues)
            if limits:
                self._redeliveries = RedeliveryBound(
                    republisher, self._handler.deadletters, limits, self.stats
                )
            consumer = self._consumer = QueueConsumer(
                broker, prefetch=pool.size, handler=self._handle
            )
            if not self._stop.is_set():
                await consumer.start(self.queues, self.consumer_tag)
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
