"""The one place a message handler is wired: used by ``Worker`` and by ``TestBroker``.

:func:`make_pool` builds the execution pool of a ``--pool`` kind;
:func:`build_handler` builds a :class:`~amqpq.worker.consumer.MessageHandler`
(admission, outcomes, the event fan-out, dead-lettering, the redelivery bound)
from publishers, the App's registry, hooks and topology, and returns it behind a
:class:`DeliveryGuard`, the callable a consumer hands each delivery to. The
worker passes its broker's publishers (and its reply connection), the test broker
its memory publisher.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amqpq.envelope import Reply
from amqpq.registry import TaskRegistry
from amqpq.topology.models import Topology
from amqpq.transport.base import ChordQueues, ConfirmingPublisher, Delivery, ReplyPublisher
from amqpq.worker.admission import Admission, RevokedIds
from amqpq.worker.consumer import MessageHandler
from amqpq.worker.deadletter import DeadLetterer, dead_letter_targets
from amqpq.worker.fanout import TaskEvents, TaskObserver
from amqpq.worker.hooks import Hooks
from amqpq.worker.options import DEFAULT_MAX_BODY_SIZE, PoolKind
from amqpq.worker.outcomes import DelayLevels, Outcomes, Publishers
from amqpq.worker.pools import LocalPool, Pool, ProcessPool
from amqpq.worker.ratelimit import RateLimiter
from amqpq.worker.redelivery import RedeliveryBound, bounded_queues
from amqpq.worker.stats import WorkerStats

if TYPE_CHECKING:
    from amqpq.results import ResultStore
    from amqpq.worker.workflows import Continuations

__all__ = ["DeliveryGuard", "HandlerOptions", "PoolSpec", "build_handler", "make_pool"]

log = logging.getLogger("amqpq.worker")


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """Which pool, with how many slots; ``app_spec`` and ``cwd`` are for child processes."""

    kind: PoolKind
    slots: int
    app_spec: str = ""
    cwd: str | None = None
    """The children's working directory (default: the worker's)."""
    stall_warning: float = 0.0
    """Solo pool: log a task that holds the loop longer than this (the AMQP heartbeat)."""


def make_pool(spec: PoolSpec, hooks: Hooks) -> Pool:
    if spec.kind == "processes":
        return ProcessPool(spec.app_spec, spec.slots, cwd=spec.cwd or os.getcwd())
    # Sync tasks in the async pool still need threads; a few suffice for occasional ones.
    # Solo keeps one, for tasks with time limits (a limit needs the loop free to fire).
    threads = spec.slots if spec.kind == "threads" else min(spec.slots, 16)
    return LocalPool(spec.kind, spec.slots, threads, hooks, stall_warning=spec.stall_warning)


@dataclass(frozen=True, slots=True)
class HandlerOptions:
    """How a handler treats deliveries beyond what the App and topology say."""

    worker_name: str
    queues: Sequence[str]
    """The consumed queues (their dead-letter targets and redelivery bounds)."""
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    rate_limits: bool = True
    """Apply per-task rate limits (the test broker does not: its clock is virtual)."""
    bound_redeliveries: bool = True
    """Count redeliveries of classic queues with a delivery limit (:mod:`redelivery`)."""
    result_store: ResultStore | None = None
    """Where every task state is stored (the App's ``result_store``), if anywhere."""
    result_expires: float = 86_400.0
    """Seconds a stored result is kept unless the task or the call says."""


class DeliveryGuard:
    """What a consumer calls for each delivery: the redelivery bound, then the handler.

    An unexpected error (a bug, a broker error mid-way) never stops the worker: the
    message is requeued once, and dead-lettered (reason ``worker_error``) when it
    comes back and fails again, instead of looping.
    """

    __slots__ = ("_redeliveries", "handler")

    def __init__(self, handler: MessageHandler, redeliveries: RedeliveryBound | None) -> None:
        self.handler = handler
        self._redeliveries = redeliveries

    async def __call__(self, delivery: Delivery) -> None:
        try:
            # Classic queues have no delivery limit: count redeliveries here (redelivery.py).
            if self._redeliveries is None or await self._redeliveries.admit(delivery):
                await self.handler(delivery)
        except Exception:
            log.exception("unexpected error handling a message queue=%s", delivery.queue)
            if not delivery.settled:
                if delivery.redelivered:
                    await self._dead_letter_broken(delivery)
                else:
                    await delivery.nack(requeue=True)

    async def _dead_letter_broken(self, delivery: Delivery) -> None:
        try:
            await self.handler.deadletters.dead_letter(
                delivery, "worker_error", "WorkerError", "the worker failed twice on this message"
            )
        except Exception:
            log.exception("dead-lettering a broken message failed")
            await delivery.reject(requeue=False)


def build_handler(
    *,
    registry: TaskRegistry,
    topology: Topology,
    hooks: Hooks,
    pool: Pool,
    stats: WorkerStats,
    replies: ConfirmingPublisher,
    direct_replies: ReplyPublisher,
    republisher: ConfirmingPublisher,
    options: HandlerOptions,
    revoked: RevokedIds | None = None,
    observers: Sequence[TaskObserver] = (),
    chords: ChordQueues | None = None,
) -> DeliveryGuard:
    """A handler for ``pool`` (started or not), publishing replies and copies as given."""
    queues = list(options.queues)
    infra = topology.infrastructure
    deadletters = DeadLetterer(republisher, dead_letter_targets(topology, queues))
    events = TaskEvents(stats, hooks, observers)
    outcomes = Outcomes(
        Publishers(replies, direct_replies, republisher, deadletters),
        DelayLevels(infra.prefix, infra.delay),
        events,
        options.worker_name,
    )

    def continuations() -> Continuations:
        # Imported on the first workflow message: the planner and the task preparer.
        from amqpq.producer import TaskPreparer
        from amqpq.worker.workflows import Continuations

        def record() -> Callable[[Reply], Awaitable[None]] | None:
            recorder = outcomes.recorder
            if recorder is None:
                return None
            return lambda reply: recorder.record(reply, None)

        return Continuations(
            TaskPreparer(registry, lambda: topology),
            republisher,
            chords,
            outcomes.publish_reply,
            options.worker_name,
            record,
        )

    outcomes.make_continuations = continuations
    if options.result_store is not None:  # imported only when a store is configured
        from amqpq.results.recorder import ResultRecorder

        outcomes.recorder = ResultRecorder(options.result_store, registry, options.result_expires)
    handler = MessageHandler(
        admission=Admission(
            registry,
            max_body_size=options.max_body_size,
            delay_enabled=infra.delay,
            revoked=revoked,
            rate_limiter=RateLimiter() if options.rate_limits else None,
        ),
        outcomes=outcomes,
        events=events,
        pool=pool,
    )
    limits = bounded_queues(topology, queues) if options.bound_redeliveries else None
    redeliveries = RedeliveryBound(republisher, deadletters, limits, stats) if limits else None
    return DeliveryGuard(handler, redeliveries)
