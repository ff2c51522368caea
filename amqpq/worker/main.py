"""The worker process's lifecycle: connect, declare, consume, drain, stop.

What runs each delivery is wired by :mod:`amqpq.worker.factory`; revocations,
control commands, events and metrics are :mod:`amqpq.worker.operations`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqpq.errors import ConfigError
from amqpq.settings import Settings
from amqpq.topology.models import Topology
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.base import Consumer
from amqpq.transport.chords import AioChordQueues
from amqpq.transport.consume import AioConfirmingPublisher, AioQueueConsumer, connection_lost
from amqpq.transport.replies import AioReplyPublisher
from amqpq.wire import worker_consumer_tag
from amqpq.worker.factory import (
    DeliveryGuard,
    HandlerOptions,
    PoolSpec,
    build_handler,
    make_pool,
)
from amqpq.worker.hooks import Hooks
from amqpq.worker.operations import WorkerIdentity, WorkerOperations, package_version
from amqpq.worker.options import (
    DEFAULT_MAX_BODY_SIZE,
    PoolKind,
    WorkerApp,
    WorkerOptions,
    default_concurrency,
    resolve_queues,
)
from amqpq.worker.stats import WorkerStats

if TYPE_CHECKING:
    from amqpq.events import EventPublisher
    from amqpq.metrics import WorkerMetrics
    from amqpq.revocations import Revocations

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "PoolKind",
    "Worker",
    "WorkerOptions",
    "declare_until_done",
    "default_concurrency",
    "resolve_queues",
]

log = logging.getLogger("amqpq.worker")

# Start-up attempts after a connection loss: 1 s, 2 s, 4 s ... then every 30 s.
_BACKOFF_FIRST = 1.0
_BACKOFF_MAX = 30.0


def _interrupted(reason: str, attempt: int) -> float:
    """Say that start-up attempt ``attempt`` was cut (one line); how long to wait now."""
    delay: float = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2.0 ** (attempt - 1))
    log.warning(
        "start-up interrupted, connection lost (%s); connecting again in %.0fs (attempt %d)",
        reason,
        delay,
        attempt,
    )
    return delay


async def declare_until_done(settings: Settings, topology: Topology) -> None:
    """Declare the topology (``--workers N`` does it once, before forking), again with
    back-off while a connection drops on the way; a first attempt that reaches no
    address raises (a wrong URL is reported once, not retried forever)."""
    from amqpq.transport.declare import declare_topology
    from amqpq.transport.wording import cannot_connect

    unreachable = cannot_connect(())
    attempt = 0
    while True:
        try:
            await declare_topology(settings, topology)
            return
        except Exception as exc:
            reason = connection_lost(exc)
            if reason is None or (attempt == 0 and str(exc).startswith(unreachable)):
                raise
            attempt += 1
            await asyncio.sleep(_interrupted(reason, attempt))


async def _cancelled(future: asyncio.Future[None]) -> None:
    """Cancel ``future`` and wait for it, whatever it raises."""
    future.cancel()
    await asyncio.gather(future, return_exceptions=True)


async def _succeeded(future: asyncio.Future[None]) -> bool:
    """Wait for ``future``; whether it succeeded (what it raises is dropped)."""
    await asyncio.gather(future, return_exceptions=True)
    return not future.cancelled() and future.exception() is None


@dataclass(frozen=True, slots=True)
class _Connections:
    """What a start opens (and closes again when the connection drops on the way)."""

    broker: AsyncBroker
    direct_replies: AioReplyPublisher
    republisher: AioConfirmingPublisher

    async def close(self) -> None:
        await self.republisher.close()
        await self.direct_replies.close()
        await self.broker.close()


class Worker:
    """``amqpq worker``: consumes ``queues`` and runs their tasks in a pool.

    ``run()`` returns the exit code: 0 after a graceful stop, 1 when stopped
    before the in-flight tasks finished (second signal or grace period over).
    """

    def __init__(
        self,
        app: WorkerApp,
        options: WorkerOptions,
        *,
        settings: Settings,
        topology: Topology,
        topology_source: str | None = None,
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
        # The file named by -f, else where the App found its topology (for the start line).
        self.topology_source = topology_source or getattr(app, "topology_source", "-")
        self.queues = resolve_queues(topology, options.queues)
        self.hostname = socket.gethostname()
        self.name = f"{self.hostname}:{os.getpid()}"
        self.stats = WorkerStats()
        self.hooks = Hooks(app)
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._consumer: Consumer | None = None
        infra = topology.infrastructure
        self.operations = WorkerOperations(
            WorkerIdentity(
                self.name, self.hostname, app.main or options.app_spec, tuple(self.queues)
            ),
            options,
            settings=settings,
            registry=app.registry,
            prefix=infra.prefix,
            enabled=infra.operations,
            stats=self.stats,
        )

    @property
    def revocations(self) -> Revocations | None:
        return self.operations.revocations

    @property
    def events(self) -> EventPublisher | None:
        return self.operations.events

    @property
    def metrics(self) -> WorkerMetrics | None:
        return self.operations.metrics

    def inspect(self) -> dict[str, Any]:
        """What ``amqpq inspect`` shows for this worker."""
        return self.operations.inspect()

    @property
    def _inflight(self) -> set[asyncio.Task[None]]:
        return self._consumer.tasks if self._consumer is not None else set()

    def consumer_tag(self, queue: str) -> str:
        return worker_consumer_tag(self.hostname, os.getpid(), queue)

    def _pool_spec(self) -> PoolSpec:
        options = self.options
        return PoolSpec(
            options.pool,
            options.slots,
            app_spec=options.app_spec,
            cwd=options.cwd,
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

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        broker = AsyncBroker(self.settings, "worker")
        # Direct replies (tasks and control commands) on a connection of their own: one
        # the broker cannot deliver may break that connection, never the acks' one.
        direct_replies = AioReplyPublisher(self.settings)
        pool = make_pool(self._pool_spec(), self.hooks)
        operations = self.operations
        consumer: Consumer | None = None
        replies = AioConfirmingPublisher(broker)
        republisher = AioConfirmingPublisher(broker)
        forced = False
        try:
            await pool.start()
            observers = operations.setup(broker, pool)
            deliver = build_handler(
                registry=self.app.registry,
                topology=self.topology,
                hooks=self.hooks,
                pool=pool,
                stats=self.stats,
                replies=replies,
                direct_replies=direct_replies,
                republisher=republisher,
                options=HandlerOptions(
                    worker_name=self.name,
                    queues=self.queues,
                    max_body_size=self.options.max_body_size,
                    result_store=self.app.result_store,
                    result_expires=self.app.result_expires,
                ),
                revoked=operations.revocations,
                observers=observers,
                chords=AioChordQueues(broker),
            )
            operations.attach(deliver.handler)
            connections = _Connections(broker, direct_replies, republisher)
            consumer = await self._start(connections, deliver, pool.size)
            if consumer is not None:
                log.info(
                    "worker started amqpq=%s app=%s tasks=%s queues=%s pool=%s concurrency=%d "
                    "prefetch=%d broker=%s connection=%r topology=%s",
                    package_version(),
                    self.app.main or self.options.app_spec,
                    ",".join(self.app.registry.names()) or "-",
                    ",".join(self.queues),
                    pool.kind,
                    pool.size,
                    pool.size,
                    broker.address.display,  # the node this process's URL order reached
                    broker.name,
                    self.topology_source,
                )
                await operations.online()
                self.hooks("worker_start", worker=self)
                await self._stop.wait()
                deliver.handler.stopping = True
                await consumer.cancel()
                forced = not await self._drain(loop)
        finally:
            if forced or self._force.is_set():
                forced = True
                pool.terminate()
            else:
                await pool.close()
            await operations.close()
            await replies.close()
            await republisher.close()
            if consumer is not None:
                await consumer.close()
            await direct_replies.close()
            await broker.close()
        self.hooks("worker_stop", worker=self)
        log.info(
            "worker stopped%s stats=%s",
            " before its tasks finished" if forced else "",
            self.stats.snapshot(),
        )
        return 1 if forced else 0

    async def _start(
        self, connections: _Connections, deliver: DeliveryGuard, prefetch: int
    ) -> Consumer | None:
        """Connect, declare, read the revocations, consume; and all of it again, with
        back-off, each time a connection drops on the way (or no address answers, once
        the broker was reached: a first refusal is a wrong URL, reported once). The
        consumer, or None when the worker was stopped before it consumed."""
        attempt = 0
        reached = False
        while not self._stop.is_set():
            consumer = self._consumer = AioQueueConsumer(
                connections.broker, prefetch=prefetch, handler=deliver
            )
            try:
                # The reply connection's handshake runs alongside the worker's own (and the
                # declare after it): a start waits for one handshake, not one after another.
                replying = asyncio.ensure_future(connections.direct_replies.start())
                try:
                    await connections.broker.connect()
                except Exception:
                    # The broker was reached if the reply connection got in (a connection
                    # limit, say, refused only this one): a retry, as when it came second.
                    reached = await _succeeded(replying) or reached
                    raise
                except BaseException:
                    await _cancelled(replying)
                    raise
                reached = True
                await self._start_once(connections, consumer, replying)
                return consumer
            except Exception as exc:
                await consumer.close()
                reason = connection_lost(exc)
                if reason is None or not reached:
                    raise
                attempt += 1
                delay = _interrupted(reason, attempt)
                await self.operations.abort_start()
                await connections.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        return None

    async def _start_once(
        self,
        connections: _Connections,
        consumer: AioQueueConsumer,
        replying: asyncio.Future[None],
    ) -> None:
        """One start on a connected broker, ``replying`` the reply connection opening;
        raises what interrupted it."""
        try:
            if self.options.declare:
                from amqpq.transport.declare import declare_topology

                # On a connection of its own too, while the reply connection opens.
                await declare_topology(self.settings, self.topology)
        except BaseException:
            await _cancelled(replying)
            raise
        await replying
        # Consume while the revocations stream is read and the control queue set up
        # (a round trip or more each): the handler holds every task until the
        # revocations are read (Revocations.wait_ready).
        starting = asyncio.ensure_future(
            self.operations.start(connections.republisher, connections.direct_replies)
        )
        try:
            if not self._stop.is_set():
                await consumer.start(self.queues, self.consumer_tag)
        except BaseException:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            raise
        await starting

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
