"""One delivery, start to finish: check, run, reply, then ack (or retry, or dead-letter).

Order of effects for every message, so that a crash at any point loses nothing:
publish what must be published (reply, retry copy, dead-letter copy) and wait
for the broker's confirm, and only then ack. A direct reply-to reply instead goes
out on the delivery's own channel right before the ack (see ``_publish_reply``). A worker that dies before the ack
gets the message redelivered (at-least-once; replies and retries may repeat).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from amqpq.codec import CONTENT_TYPE, OutgoingMessage, decode_task, encode_reply, fresh_headers
from amqpq.delay import plan_delay
from amqpq.envelope import PROTOCOL_VERSION, ErrorInfo, Reply, TaskEnvelope, TaskState
from amqpq.errors import AmqpqError, ArgumentsError, DecodeError
from amqpq.registry import Request, Task, TaskRegistry
from amqpq.transport.base import ConfirmingPublisher, Delivery
from amqpq.wire import DIRECT_REPLY_TO_PREFIX, HEADER_TASK
from amqpq.worker.deadletter import DeadLetterer
from amqpq.worker.execution import Outcome, RetryRequest, retry_countdown
from amqpq.worker.hooks import Hooks
from amqpq.worker.pools import Job, Pool
from amqpq.worker.ratelimit import RateLimiter
from amqpq.worker.stats import WorkerStats

__all__ = ["ETA_TOLERANCE", "ActiveTask", "MessageHandler", "RevokedIds", "TaskObserver"]

log = logging.getLogger("amqpq.worker")

# An eta this close is run now: re-delaying it would cost more than it saves.
ETA_TOLERANCE = timedelta(milliseconds=100)
_STATES = {state.value: state for state in TaskState}
_MAX_DONE_UNACKED = 10_000
_JSON_CONTENT_TYPES = (CONTENT_TYPE, None, "")


class TaskObserver(Protocol):
    """Told about every task state change (events, metrics). Must not block or raise.

    ``state``: received, started, succeeded, failed, retried, rejected, revoked.
    """

    def task_event(
        self, state: str, task: str, task_id: str, fields: Mapping[str, Any]
    ) -> None: ...


class RevokedIds(Protocol):
    """The revoked task ids (``amqpq.revocations.Revocations``)."""

    @property
    def ready(self) -> bool: ...

    async def wait_ready(self) -> None: ...

    def __contains__(self, task_id: object) -> bool: ...


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

    def describe(self, now: float | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "retries": self.retries,
            "started_at": self.started_at.isoformat(timespec="milliseconds"),
            "runtime": round((now or time.monotonic()) - self.started, 3),
        }


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class MessageHandler:
    """Called for every delivery (by the transport's consumer, one asyncio task each)."""

    def __init__(
        self,
        *,
        registry: TaskRegistry,
        pool: Pool,
        replies: ConfirmingPublisher,
        republisher: ConfirmingPublisher,
        deadletters: DeadLetterer,
        stats: WorkerStats,
        hooks: Hooks,
        concurrency: int,
        worker_name: str,
        max_body_size: int,
        delay_prefix: str,
        delay_enabled: bool,
        revoked: RevokedIds | None = None,
        observers: Sequence[TaskObserver] = (),
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self._registry = registry
        self._pool = pool
        self._replies = replies
        self._republisher = republisher
        self.deadletters = deadletters
        self.stats = stats
        self._hooks = hooks
        self._slots = asyncio.Semaphore(concurrency)
        self._worker = worker_name
        self._max_body_size = max_body_size
        self._delay_prefix = delay_prefix
        self._delay_enabled = delay_enabled
        self.stopping = False
        # Message ids whose task finished (reply sent) but whose ack was dropped because the
        # connection closed under it. When the broker redelivers one, ack it, do not rerun it.
        self._done_unacked: OrderedDict[str, None] = OrderedDict()
        self._no_arguments: dict[str, bool] = {}  # task name -> callable without arguments
        self.revoked = revoked
        self.observers = tuple(observers)
        self.rate_limiter = rate_limiter
        self.active: dict[str, ActiveTask] = {}  # task id -> running now
        self._terminated: set[str] = set()
        self.terminated_ids: OrderedDict[str, None] = OrderedDict()  # recently, for replies

    def _notify(self, state: str, task: str, task_id: str, **fields: Any) -> None:
        for observer in self.observers:
            try:
                observer.task_event(state, task, task_id, fields)
            except Exception:
                log.debug("task observer %r failed", observer, exc_info=True)

    # -- the pipeline -----------------------------------------------------------------------

    async def __call__(self, delivery: Delivery) -> None:
        self.stats.received += 1
        size = len(delivery.body)
        if size > self._max_body_size:
            await self._reject(
                delivery,
                None,
                "too_large",
                "MessageTooLarge",
                f"body of {size} bytes is over the worker's limit of {self._max_body_size} bytes",
            )
            return
        try:
            envelope = self._decode(delivery)
        except DecodeError as exc:
            cause = exc.__cause__
            reason = (
                "bad_json"
                if isinstance(cause, UnicodeDecodeError | json.JSONDecodeError)
                else "bad_envelope"
            )
            await self._reject(delivery, None, reason, "DecodeError", str(exc))
            return
        if self.observers:
            self._notify("received", envelope.task, envelope.id, queue=delivery.queue)
        revoked = self.revoked
        if revoked is not None:
            if not revoked.ready:  # a worker just started: read the revocations first
                await revoked.wait_ready()
            if envelope.id in revoked:
                await self._skip_revoked(delivery, envelope, "revoked")
                return
        if envelope.eta is not None or envelope.expires is not None:
            now = datetime.now(UTC)
            if envelope.expires is not None and _utc(envelope.expires) <= now:
                await self._reject(
                    delivery,
                    envelope,
                    "expired",
                    "TaskExpiredError",
                    f"task expired at {_utc(envelope.expires).isoformat()}",
                    state=TaskState.EXPIRED,
                )
                return
            if (
                envelope.eta is not None
                and self._delay_enabled
                and _utc(envelope.eta) - now > ETA_TOLERANCE
            ):
                await self._redelay(delivery, envelope, _utc(envelope.eta) - now)
                return
        task = self._registry.find(envelope.task)
        if task is None:
            await self._reject(
                delivery,
                envelope,
                "unknown_task",
                "TaskNotFoundError",
                f"no task named {envelope.task!r} is registered in this worker",
            )
            return
        try:
            if envelope.args or envelope.kwargs or not self._takes_no_arguments(task):
                args, kwargs = task.signature.from_wire(envelope.args, envelope.kwargs)
            else:
                args, kwargs = [], {}
        except ArgumentsError as exc:
            await self._reject(delivery, envelope, "bad_arguments", "ArgumentsError", str(exc))
            return
        if self.rate_limiter is not None and task.options.rate_limit is not None:
            # Waits before taking an execution slot: only this message's prefetch is held.
            rate = task.options.rate_per_second
            assert rate is not None
            await self.rate_limiter.wait(task.name, rate)
            if revoked is not None and envelope.id in revoked:
                await self._skip_revoked(delivery, envelope, "revoked")
                return
        async with self._slots:
            if self.stopping:  # received while shutting down, never started: give it back
                self.stats.requeued += 1
                await delivery.nack(requeue=True)
                return
            if delivery.redelivered and envelope.id in self._done_unacked:
                # Checked once the slot is ours: the first run may have just finished.
                del self._done_unacked[envelope.id]
                log.info(
                    "redelivered task id=%s already ran here (its ack was dropped by a "
                    "reconnect): acked without running it again",
                    envelope.id,
                )
                await self._ack(delivery)
                return
            await self._execute(delivery, envelope, task, args, kwargs)

    def _takes_no_arguments(self, task: Task[Any, Any]) -> bool:
        known = self._no_arguments.get(task.name)
        if known is None:
            try:
                task.signature.signature.bind()
            except TypeError:
                known = False
            else:
                known = True
            self._no_arguments[task.name] = known
        return known

    @staticmethod
    def _decode(delivery: Delivery) -> TaskEnvelope:
        # Fast path: pydantic parses the JSON itself. Anything unusual (no id in the body,
        # a newer protocol, not JSON at all) goes through decode_task for its error.
        if delivery.properties.content_type in _JSON_CONTENT_TYPES:
            try:
                envelope = TaskEnvelope.model_validate_json(delivery.body)
            except ValueError:
                pass
            else:
                if envelope.protocol <= PROTOCOL_VERSION:
                    return envelope
        return decode_task(delivery.body, delivery.properties)

    async def _execute(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        task: Task[Any, Any],
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
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
            )

        if not options.acks_late:
            await self._ack(delivery)
        if reply_to and options.track_started:
            await self._reply(delivery, reply_to, envelope, TaskState.STARTED)

        async def progress(state: str, meta: dict[str, Any] | None) -> None:
            if reply_to:
                known = _STATES.get(state)
                if known is None or known.is_final:
                    meta = {**(meta or {}), "state": state}
                    known = TaskState.PROGRESS
                await self._reply(delivery, reply_to, envelope, known, meta=meta)

        job = Job(task, args, kwargs, envelope.args, envelope.kwargs, request, progress)
        self.stats.active += 1
        started = time.monotonic()
        self.active[envelope.id] = ActiveTask(
            envelope.id,
            envelope.task,
            delivery.queue,
            envelope.retries,
            datetime.now(UTC),
            started,
            job,
        )
        if self.observers:
            self._notify("started", envelope.task, envelope.id, queue=delivery.queue)
        try:
            outcome = await self._pool.run(job)
        finally:
            self.stats.active -= 1
            self.active.pop(envelope.id, None)
        runtime = time.monotonic() - started
        status = outcome.status
        if self._terminated and envelope.id in self._terminated:
            self._terminated.discard(envelope.id)
            await self._skip_revoked(delivery, envelope, "terminated", runtime=runtime)
            return
        if status == "success":
            if self.observers:
                self._notify(
                    "succeeded",
                    envelope.task,
                    envelope.id,
                    queue=delivery.queue,
                    runtime=round(runtime, 6),
                )
            self.stats.succeeded += 1
            if reply_to and not options.ignore_result:
                await self._reply(
                    delivery, reply_to, envelope, TaskState.SUCCESS, result=outcome.result
                )
            log.debug("task succeeded task=%s id=%s", envelope.task, envelope.id)
            await self._ack(delivery)
        elif status == "retry":
            await self._retry(delivery, envelope, task, outcome, job.request)
        elif status == "crashed":
            self.stats.requeued += 1
            log.error(
                "task %s id=%s lost its process: %s; message requeued",
                envelope.task,
                envelope.id,
                outcome.error.message if outcome.error else "",
            )
            await delivery.nack(requeue=True)
        else:
            error = outcome.error or ErrorInfo(type="Exception")
            await self._fail(delivery, envelope, error, "failed", runtime=runtime)

    # -- outcomes ---------------------------------------------------------------------------

    async def _retry(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        task: Task[Any, Any],
        outcome: Outcome,
        request: Request,
    ) -> None:
        retry = outcome.retry or RetryRequest()
        options = task.options
        max_retries = retry.max_retries if retry.max_retries is not None else options.max_retries
        if max_retries is not None and envelope.retries >= max_retries:
            error = outcome.error or ErrorInfo(
                type="MaxRetriesExceededError",
                message=f"task {task.name} retried {envelope.retries} times (max_retries)",
            )
            await self._fail(delivery, envelope, error, "max_retries_exceeded")
            return
        countdown = retry_countdown(options, retry, envelope.retries)
        eta = datetime.now(UTC) + timedelta(seconds=countdown)
        again = envelope.model_copy(update={"retries": envelope.retries + 1, "eta": eta})
        body = again.model_dump_json(exclude_none=True).encode()
        try:
            await self._republisher.publish(self._delayed(delivery, body, countdown))
        except AmqpqError as exc:
            log.error(
                "retry of task %s id=%s not scheduled (%s); message requeued",
                envelope.task,
                envelope.id,
                exc,
            )
            self.stats.requeued += 1
            await delivery.nack(requeue=True)
            return
        self.stats.retried += 1
        if self.observers:
            self._notify(
                "retried",
                envelope.task,
                envelope.id,
                queue=delivery.queue,
                retries=envelope.retries + 1,
                countdown=countdown,
                error=outcome.error.type if outcome.error else None,
            )
        log.info(
            "task retry scheduled task=%s id=%s retries=%d countdown=%.3fs error=%s",
            envelope.task,
            envelope.id,
            envelope.retries + 1,
            countdown,
            outcome.error.type if outcome.error else "-",
        )
        self._hooks(
            "task_retry", request=request, task=task, countdown=countdown, error=outcome.error
        )
        reply_to = delivery.properties.reply_to
        if reply_to:
            await self._reply(
                delivery,
                reply_to,
                envelope,
                TaskState.RETRY,
                error=outcome.error,
                retries=envelope.retries + 1,
                meta={"countdown": countdown, "eta": eta.isoformat()},
            )
        await self._ack(delivery)

    async def _fail(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        error: ErrorInfo,
        reason: str,
        runtime: float | None = None,
    ) -> None:
        self.stats.failed += 1
        self.stats.dead_lettered[reason] += 1
        if self.observers:
            self._notify(
                "failed",
                envelope.task,
                envelope.id,
                queue=delivery.queue,
                reason=reason,
                error=error.type,
                message=error.message[:500] if error.message else None,
                runtime=round(runtime, 6) if runtime is not None else None,
            )
        log.warning(
            "task failed task=%s id=%s reason=%s error=%s: %s",
            envelope.task,
            envelope.id,
            reason,
            error.type,
            error.message,
        )
        reply_to = delivery.properties.reply_to
        if reply_to:
            await self._reply(delivery, reply_to, envelope, TaskState.FAILURE, error=error)
        await self.deadletters.dead_letter(delivery, reason, error.type, error.message)

    async def _reject(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope | None,
        reason: str,
        error_type: str,
        message: str,
        state: TaskState = TaskState.REJECTED,
    ) -> None:
        """Bad input: dead-letter with the reason, answer the caller, log once, count."""
        self.stats.dead_lettered[reason] += 1
        props = delivery.properties
        task_id = envelope.id if envelope else (props.correlation_id or props.message_id)
        if self.observers:
            self._notify(
                "rejected",
                envelope.task if envelope else str(props.headers.get(HEADER_TASK, "-")),
                task_id or "-",
                queue=delivery.queue,
                reason=reason,
                error=message,
            )
        log.warning(
            "message rejected queue=%s id=%s task=%s reason=%s: %s",
            delivery.queue,
            task_id,
            envelope.task if envelope else props.headers.get(HEADER_TASK, "-"),
            reason,
            message,
        )
        if props.reply_to and task_id:
            reply = Reply.model_construct(
                id=task_id,
                task=envelope.task if envelope else None,
                state=state,
                error=ErrorInfo(type=error_type, message=message),
                retries=envelope.retries if envelope else 0,
                worker=self._worker,
            )
            await self._publish_reply(delivery, props.reply_to, reply)
        await self.deadletters.dead_letter(delivery, reason, error_type, message)

    async def _skip_revoked(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        how: str,
        runtime: float | None = None,
    ) -> None:
        """A revoked task: not run (or stopped), answered REVOKED, acked, counted."""
        self.stats.revoked += 1
        log.info("task %s task=%s id=%s: acked without a result", how, envelope.task, envelope.id)
        reply_to = delivery.properties.reply_to
        if reply_to:
            message = "terminated while running" if how == "terminated" else "revoked"
            await self._reply(
                delivery,
                reply_to,
                envelope,
                TaskState.REVOKED,
                error=ErrorInfo(type="TaskRevokedError", message=f"task {envelope.id} {message}"),
            )
        if self.observers:
            self._notify(
                "revoked",
                envelope.task,
                envelope.id,
                queue=delivery.queue,
                terminated=how == "terminated" or None,
                runtime=round(runtime, 6) if runtime is not None else None,
            )
        await self._ack(delivery)

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
        if len(self.terminated_ids) > 1000:
            self.terminated_ids.popitem(last=False)
        log.warning("task terminated task=%s id=%s", active.task, task_id)
        return "terminated"

    async def _redelay(self, delivery: Delivery, envelope: TaskEnvelope, wait: timedelta) -> None:
        """An eta still ahead (a delay cut at 12.4 days, or a plain client): wait on the broker."""
        seconds = wait.total_seconds()
        try:
            await self._republisher.publish(self._delayed(delivery, delivery.body, seconds))
        except AmqpqError as exc:
            log.error(
                "task %s id=%s has an eta in %.0fs but it could not be re-delayed (%s); requeued",
                envelope.task,
                envelope.id,
                seconds,
                exc,
            )
            self.stats.requeued += 1
            await asyncio.sleep(1.0)  # do not spin on a broker that refuses the delay
            await delivery.nack(requeue=True)
            return
        self.stats.redelayed += 1
        log.debug("task re-delayed task=%s id=%s wait=%.3fs", envelope.task, envelope.id, seconds)
        await self._ack(delivery)

    def _delayed(self, delivery: Delivery, body: bytes, seconds: float) -> OutgoingMessage:
        """A fresh copy that waits ``seconds`` in the delay levels, then lands in this queue."""
        headers = fresh_headers(delivery.properties.headers)
        properties = replace(delivery.properties, expiration=None, delivery_mode=2)
        if not self._delay_enabled:  # no delay levels declared: straight back to the queue
            return OutgoingMessage(
                body=body,
                properties=replace(properties, headers=headers),
                exchange="",
                routing_key=delivery.queue,
            )
        plan = plan_delay(
            round(seconds * 1000), prefix=self._delay_prefix, target_queue=delivery.queue
        )
        headers.update(plan.headers)
        return OutgoingMessage(
            body=body,
            properties=replace(properties, headers=headers),
            exchange=plan.exchange,
            routing_key=delivery.routing_key,
        )

    # -- publishing and settling ------------------------------------------------------------

    async def _reply(
        self,
        delivery: Delivery,
        reply_to: str,
        envelope: TaskEnvelope,
        state: TaskState,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
        meta: dict[str, Any] | None = None,
        retries: int | None = None,
    ) -> None:
        reply = Reply.model_construct(
            id=envelope.id,
            task=envelope.task,
            state=state,
            result=result,
            error=error,
            meta=meta,
            retries=envelope.retries if retries is None else retries,
            worker=self._worker,
        )
        await self._publish_reply(delivery, reply_to, reply)

    async def _publish_reply(self, delivery: Delivery, reply_to: str, reply: Reply) -> None:
        try:
            message = encode_reply(reply, reply_to=reply_to)
        except ValueError as exc:  # a result pydantic cannot serialise
            log.error("reply for id=%s cannot be encoded: %s", reply.id, exc)
            message = encode_reply(
                reply.model_copy(
                    update={
                        "state": TaskState.FAILURE,
                        "result": None,
                        "error": ErrorInfo(type="EncodeError", message=str(exc)),
                    }
                ),
                reply_to=reply_to,
            )
        if reply_to.startswith(DIRECT_REPLY_TO_PREFIX):
            # Ahead of the ack on the same channel, unconfirmed: whatever a confirm said,
            # the task ran and its message is acked, and a caller who left cannot be told.
            await delivery.send_reply(message)
            return
        try:
            await self._replies.publish(message)
        except AmqpqError as exc:
            # The caller may be gone, or the connection dropped (then the ack will be stale
            # and the message redelivered, so the reply is sent again).
            log.warning("reply not delivered id=%s reply_to=%s: %s", reply.id, reply_to, exc)

    async def _ack(self, delivery: Delivery) -> None:
        if delivery.settled:
            return
        if not await delivery.ack():
            self.stats.stale_acks += 1
            message_id = delivery.properties.message_id
            if message_id is not None:  # the task id for amqpq producers
                self._done_unacked[message_id] = None
                if len(self._done_unacked) > _MAX_DONE_UNACKED:
                    self._done_unacked.popitem(last=False)
