"""One delivery, start to finish: admit, run, then settle (reply, retry or dead-letter, ack).

:class:`MessageHandler` only sequences the steps: :mod:`amqpq.worker.admission`
decides whether a delivery runs, the pool runs it, :mod:`amqpq.worker.outcomes`
publishes and acks in the documented order, and :mod:`amqpq.worker.fanout` tells
stats, observers, hooks and logs about each state change. Build one with
:func:`amqpq.worker.factory.build_handler`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from amqpq.envelope import TaskState
from amqpq.registry import Request, Task
from amqpq.transport.base import Delivery
from amqpq.worker.admission import REVOKED, Admission, Refusal
from amqpq.worker.fanout import TaskEvents, TaskObserver
from amqpq.worker.outcomes import Outcomes
from amqpq.worker.pools import Job, Pool
from amqpq.workflow import shape_of

# TaskObserver lives in amqpq.worker.fanout; named here too for amqpq.events, which cites it.
__all__ = ["ActiveTask", "MessageHandler", "TaskObserver"]

log = logging.getLogger("amqpq.worker")

_STATES = {state.value: state for state in TaskState}
_MAX_TERMINATED = 1000


@dataclass(slots=True)
class ActiveTask:
    """A task running now (``amqpq inspect``)."""

    id: str
    task: str
    queue: str
    retries: int
    started_at: datetime
    started: float  # time.monotonic()
    job: Job
    shadow: str | None = None  # the caller's display name for this call
    workflow: dict[str, Any] | None = None  # where it sits in a workflow (shape_of)

    def describe(self, now: float | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "shadow": self.shadow,
            **({"workflow": self.workflow} if self.workflow else {}),
            "retries": self.retries,
            "started_at": self.started_at.isoformat(timespec="milliseconds"),
            "runtime": round((now or time.monotonic()) - self.started, 3),
        }


class MessageHandler:
    """Called for every delivery (by the transport's consumer, one asyncio task each)."""

    def __init__(
        self, *, admission: Admission, outcomes: Outcomes, events: TaskEvents, pool: Pool
    ) -> None:
        self._admission = admission
        self._outcomes = outcomes
        self._events = events
        self._pool = pool
        self._slots = asyncio.Semaphore(pool.size)  # one task per execution slot
        self._worker = outcomes.worker_name
        self.deadletters = outcomes.deadletters
        self.stopping = False
        self.active: dict[str, ActiveTask] = {}  # task id -> running now
        self._terminated: set[str] = set()
        self.terminated_ids: OrderedDict[str, None] = OrderedDict()  # recently, for replies

    async def __call__(self, delivery: Delivery) -> None:
        events = self._events
        outcomes = self._outcomes
        admission = self._admission
        events.delivered()
        envelope = admission.read(delivery)
        if isinstance(envelope, Refusal):
            await outcomes.reject(delivery, None, envelope)
            return
        shape = (
            shape_of(envelope)
            if envelope.parent_id or envelope.group_id or envelope.chord or envelope.chain
            else None
        )
        events.received(
            envelope.task,
            envelope.id,
            delivery.queue,
            envelope.shadow,
            shape,
            envelope=envelope,
            size=len(delivery.body),
        )
        revoked = admission.revoked
        if revoked is not None and not revoked.ready:
            await revoked.wait_ready()  # a worker just started: read the revocations first
        task = admission.check(envelope)
        if not isinstance(task, Task):
            if task is REVOKED:
                await outcomes.revoke(delivery, envelope)
            elif isinstance(task, Refusal):
                await outcomes.reject(delivery, envelope, task)
            else:
                await outcomes.redelay(delivery, envelope, task.wait)
            return
        arguments = admission.arguments(task, envelope)
        if isinstance(arguments, Refusal):
            await outcomes.reject(delivery, envelope, arguments)
            return
        args, kwargs = arguments
        if (
            admission.rate_limiter is not None
            and task.options.rate_limit is not None
            and not await admission.throttle(task, envelope.id)
        ):
            await outcomes.revoke(delivery, envelope)
            return
        async with self._slots:
            if self.stopping:  # received while shutting down, never started: give it back
                await outcomes.requeue(delivery)
                return
            if delivery.redelivered and outcomes.already_ran(envelope.id):
                # Checked once the slot is ours: the first run may have just finished.
                log.info(
                    "redelivered task id=%s already ran here (its ack was dropped by a "
                    "reconnect): acked without running it again",
                    envelope.id,
                )
                await outcomes.ack(delivery)
                return
            props = delivery.properties
            reply_to = props.reply_to
            options = task.options

            def request() -> Request:
                return Request(
                    id=envelope.id,
                    task=envelope.task,
                    args=tuple(envelope.args),
                    kwargs=envelope.kwargs,
                    retries=envelope.retries,
                    eta=envelope.eta,
                    expires=envelope.expires,
                    parent_id=envelope.parent_id,
                    root_id=envelope.root_id,
                    reply_to=reply_to,
                    correlation_id=props.correlation_id,
                    headers=props.headers,
                    queue=delivery.queue,
                    exchange=delivery.exchange,
                    routing_key=delivery.routing_key,
                    redelivered=delivery.redelivered,
                    hostname=self._worker,
                    shadow=envelope.shadow,
                    group_id=envelope.group_id,
                    group_index=envelope.group_index,
                    chord_id=envelope.chord.id if envelope.chord is not None else None,
                )

            if not options.acks_late:
                await outcomes.ack(delivery)
            recorder = outcomes.recorder  # the result store's writer, if any
            if reply_to and options.track_started:
                await outcomes.reply(delivery, reply_to, envelope, TaskState.STARTED)
            if recorder is not None and options.track_started:
                await recorder.record(outcomes.make_reply(envelope, TaskState.STARTED), envelope)

            async def progress(state: str, meta: dict[str, Any] | None) -> None:
                if reply_to or recorder is not None:
                    known = _STATES.get(state)
                    if known is None or known.is_final:
                        meta = {**(meta or {}), "state": state}
                        known = TaskState.PROGRESS
                    if reply_to:
                        await outcomes.reply(delivery, reply_to, envelope, known, meta=meta)
                    if recorder is not None:
                        stored = outcomes.make_reply(envelope, known, meta=meta)
                        await recorder.record(stored, envelope)

            job = Job(task, args, kwargs, envelope.args, envelope.kwargs, request, progress)
            started = time.monotonic()
            self.active[envelope.id] = ActiveTask(
                envelope.id,
                envelope.task,
                delivery.queue,
                envelope.retries,
                datetime.now(UTC),
                started,
                job,
                envelope.shadow,
                shape,
            )
            events.started(envelope.task, envelope.id, delivery.queue, envelope.shadow)
            try:
                outcome = await self._pool.run(job)
            finally:
                events.ended()
                self.active.pop(envelope.id, None)
            runtime = time.monotonic() - started
            terminated = bool(self._terminated) and envelope.id in self._terminated
            if terminated:
                self._terminated.discard(envelope.id)
            await outcomes.settle(delivery, envelope, job, outcome, runtime, terminated=terminated)

    def terminate(self, task_id: str) -> str:
        """Stop a running task if the pool can: "terminated", or why not."""
        active = self.active.get(task_id)
        if active is None:
            return "not running here"
        kill = getattr(self._pool, "terminate_job", None)
        if kill is None or not kill(active.job):
            return (
                f"cannot terminate on the {self._pool.kind} pool (a thread cannot be killed); "
                "it runs to the end"
            )
        self._terminated.add(task_id)
        self.terminated_ids[task_id] = None
        if len(self.terminated_ids) > _MAX_TERMINATED:
            self.terminated_ids.popitem(last=False)
        log.warning("task terminated task=%s id=%s", active.task, task_id)
        return "terminated"
