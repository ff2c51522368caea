"""How a delivery is settled: reply, retry copy, dead letter, re-delay, then ack.

Order of effects for every message, so that a crash at any point loses nothing:
publish what must be published (reply, retry copy, dead-letter copy, re-delayed
copy) and wait for the broker's confirm, and only then ack. A direct reply-to
reply instead goes out unconfirmed right before the ack, on the worker's reply
connection (see :meth:`Outcomes.publish_reply`): a reply that cannot be
delivered is logged and dropped, and never costs the ack. A worker that dies
before the ack gets the message redelivered (at-least-once; replies and retries
may repeat).

Each outcome tells :class:`~amqpq.worker.fanout.TaskEvents` once (stats,
observers, hooks, logs).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from amqpq.celery_wire import celery_retry_headers, encode_celery_reply, is_celery_message
from amqpq.codec import MessageProperties, OutgoingMessage, encode_reply, fresh_headers
from amqpq.delay import plan_delay
from amqpq.envelope import ErrorInfo, Reply, TaskEnvelope, TaskState
from amqpq.errors import AmqpqError
from amqpq.registry import Request, Task
from amqpq.transport.base import ConfirmingPublisher, Delivery, ReplyPublisher
from amqpq.wire import DIRECT_REPLY_TO_PREFIX, HEADER_CALLER, HEADER_TASK, is_caller_queue
from amqpq.worker.admission import Refusal
from amqpq.worker.deadletter import DeadLetterer
from amqpq.worker.execution import Outcome, RetryRequest, Status, retry_countdown
from amqpq.worker.fanout import TaskEvents
from amqpq.worker.pools import Job

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqpq.results.recorder import ResultRecorder
    from amqpq.worker.workflows import Continuations

__all__ = ["DelayLevels", "Outcomes", "Publishers"]

log = logging.getLogger("amqpq.worker")

_MAX_DONE_UNACKED = 10_000
# Read once: an enum member read through its class is a descriptor call, on every task.
_SUCCESS, _RETRY, _CRASHED = Status.SUCCESS, Status.RETRY, Status.CRASHED


@dataclass(frozen=True, slots=True)
class Publishers:
    """Where a worker publishes: replies (to durable result queues, confirmed; direct
    reply-to, not), its own copies (retries, re-delays), dead letters."""

    replies: ConfirmingPublisher
    direct_replies: ReplyPublisher
    republisher: ConfirmingPublisher
    deadletters: DeadLetterer


@dataclass(frozen=True, slots=True)
class DelayLevels:
    """The topology's delay levels (``infrastructure.prefix`` and ``.delay``)."""

    prefix: str
    enabled: bool


class Outcomes:
    """Settles deliveries, each outcome publishing first and acking last."""

    def __init__(
        self, publishers: Publishers, delays: DelayLevels, events: TaskEvents, worker_name: str
    ) -> None:
        self._replies = publishers.replies
        self._direct_replies = publishers.direct_replies
        self._republisher = publishers.republisher
        self.deadletters = publishers.deadletters
        self._delays = delays
        self._events = events
        self._worker = self.worker_name = worker_name
        # Message ids whose task finished (reply sent) but whose ack was dropped because the
        # connection closed under it. When the broker redelivers one, ack it, do not rerun it.
        self._done_unacked: OrderedDict[str, None] = OrderedDict()
        # The result store's writer (factory.build_handler), None without a store: every
        # state is stored before the ack (amqpq.results.recorder retries a store that is down).
        self.recorder: ResultRecorder | None = None
        # The workflow steps (docs/workflows.md), built on the first workflow message: a
        # worker that never sees one never imports the planner and the preparer.
        self.make_continuations: Callable[[], Continuations] | None = None
        self._continuations: Continuations | None = None

    @property
    def continuations(self) -> Continuations:
        found = self._continuations
        if found is None:
            if self.make_continuations is None:
                raise AmqpqError("this worker runs no workflows (no continuations given)")
            found = self._continuations = self.make_continuations()
        return found

    # -- the outcomes -----------------------------------------------------------------------

    async def settle(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        job: Job,
        outcome: Outcome,
        runtime: float,
        *,
        terminated: bool,
    ) -> None:
        """After the pool ran ``job``: success, retry, failure, requeue (its process was
        lost) or revoked (terminated while running), as its status calls for."""
        status = outcome.status
        if terminated:
            await self.revoke(delivery, envelope, terminated=True, runtime=runtime)
        elif status is _SUCCESS:  # written out here: the hot path awaits no more
            self._events.succeeded(
                envelope.task, envelope.id, delivery.queue, runtime, envelope.shadow, outcome.result
            )
            reply_to = delivery.properties.reply_to
            if reply_to and not job.task.options.ignore_result:
                await self.reply(
                    delivery, reply_to, envelope, TaskState.SUCCESS, result=outcome.result
                )
            if self.recorder is not None:  # result store
                stored = self.make_reply(envelope, TaskState.SUCCESS, result=outcome.result)
                await self.recorder.record(stored, envelope)
            if (
                envelope.chain or envelope.chord is not None or envelope.link
            ) and not await self.continuations.succeeded(delivery, envelope, outcome.result):
                await asyncio.sleep(1.0)  # do not spin on a broker that refuses the next step
                await self.requeue(delivery)
                return
            await self.ack(delivery)
        elif status is _RETRY:
            await self.retry(delivery, envelope, job.task, outcome, job.request)
        elif status is _CRASHED:
            log.error(
                "task %s id=%s lost its process: %s; message requeued",
                envelope.task,
                envelope.id,
                outcome.error.message if outcome.error else "",
            )
            await self.requeue(delivery)
        else:
            error = outcome.error or ErrorInfo(type="Exception")
            await self.fail(delivery, envelope, error, "failed", runtime=runtime)

    async def retry(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        task: Task[Any, Any],
        outcome: Outcome,
        request: Request,
    ) -> None:
        """A retry copy through the delay levels, or a failure once retries are spent."""
        retry = outcome.retry or RetryRequest()
        options = task.options
        max_retries = retry.max_retries if retry.max_retries is not None else options.max_retries
        if max_retries is not None and envelope.retries >= max_retries:
            error = outcome.error or ErrorInfo(
                type="MaxRetriesExceededError",
                message=f"task {task.name} retried {envelope.retries} times (max_retries)",
            )
            await self.fail(delivery, envelope, error, "max_retries_exceeded")
            return
        countdown = retry_countdown(options, retry, envelope.retries)
        eta = datetime.now(UTC) + timedelta(seconds=countdown)
        headers = delivery.properties.headers
        if is_celery_message(headers):
            # A Celery message stays one: same body, Celery's retries and eta headers.
            body = delivery.body
            retry_headers = celery_retry_headers(
                fresh_headers(headers), retries=envelope.retries + 1, eta=eta
            )
        else:
            again = envelope.model_copy(update={"retries": envelope.retries + 1, "eta": eta})
            body = again.model_dump_json(exclude_none=True).encode()
            retry_headers = None
        try:
            await self._republisher.publish(self._delayed(delivery, body, countdown, retry_headers))
        except AmqpqError as exc:
            log.error(
                "retry of task %s id=%s not scheduled (%s); message requeued",
                envelope.task,
                envelope.id,
                exc,
            )
            await self.requeue(delivery)
            return
        self._events.retried(
            task,
            envelope.id,
            delivery.queue,
            retries=envelope.retries + 1,
            countdown=countdown,
            error=outcome.error,
            request=request,
        )
        reply_to = delivery.properties.reply_to
        if reply_to:
            await self.reply(
                delivery,
                reply_to,
                envelope,
                TaskState.RETRY,
                error=outcome.error,
                retries=envelope.retries + 1,
                meta={"countdown": countdown, "eta": eta.isoformat()},
            )
        if self.recorder is not None:  # result store
            stored = self.make_reply(
                envelope,
                TaskState.RETRY,
                error=outcome.error,
                retries=envelope.retries + 1,
                meta={"countdown": countdown, "eta": eta.isoformat()},
            )
            await self.recorder.record(stored, envelope)
        await self.ack(delivery)

    async def fail(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        error: ErrorInfo,
        reason: str,
        runtime: float | None = None,
    ) -> None:
        self._events.failed(
            envelope.task,
            envelope.id,
            delivery.queue,
            reason=reason,
            error=error,
            runtime=runtime,
            shadow=envelope.shadow,
        )
        reply_to = delivery.properties.reply_to
        if reply_to:
            await self.reply(delivery, reply_to, envelope, TaskState.FAILURE, error=error)
        if self.recorder is not None:  # result store
            await self.recorder.record(
                self.make_reply(envelope, TaskState.FAILURE, error=error), envelope
            )
        await self._workflow_failed(delivery, envelope, error, TaskState.FAILURE)
        await self.deadletters.dead_letter(delivery, reason, error.type, error.message)

    async def _workflow_failed(
        self, delivery: Delivery, envelope: TaskEnvelope | None, error: ErrorInfo, state: TaskState
    ) -> None:
        """A workflow's task that ended without a result: the rest of it is told."""
        if envelope is not None and (
            envelope.chain or envelope.chord is not None or envelope.link_error
        ):
            await self.continuations.failed(delivery, envelope, error, state)

    async def reject(
        self, delivery: Delivery, envelope: TaskEnvelope | None, refusal: Refusal
    ) -> None:
        """Bad input: dead-letter with the reason, answer the caller, log once, count."""
        props = delivery.properties
        task_id = envelope.id if envelope else (props.correlation_id or props.message_id)
        task = envelope.task if envelope else str(props.headers.get(HEADER_TASK, "-"))
        self._events.rejected(
            task, task_id, delivery.queue, reason=refusal.reason, message=refusal.message
        )
        if (props.reply_to or self.recorder is not None) and task_id:
            reply = Reply.model_construct(
                id=task_id,
                task=envelope.task if envelope else None,
                state=refusal.state,
                error=ErrorInfo(type=refusal.error_type, message=refusal.message),
                retries=envelope.retries if envelope else 0,
                worker=self._worker,
            )
            if props.reply_to:
                await self.publish_reply(
                    delivery, props.reply_to, reply, celery=refusal.celery_caller
                )
            if self.recorder is not None:  # result store
                await self.recorder.record(reply, envelope)
        await self._workflow_failed(
            delivery,
            envelope,
            ErrorInfo(type=refusal.error_type, message=refusal.message),
            refusal.state,
        )
        await self.deadletters.dead_letter(
            delivery, refusal.reason, refusal.error_type, refusal.message
        )

    async def revoke(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        *,
        terminated: bool = False,
        runtime: float | None = None,
    ) -> None:
        """A revoked task: not run (or stopped), answered REVOKED, acked, counted."""
        self._events.revoked(
            envelope.task,
            envelope.id,
            delivery.queue,
            terminated=terminated,
            runtime=runtime,
            shadow=envelope.shadow,
        )
        reply_to = delivery.properties.reply_to
        message = "terminated while running" if terminated else "revoked"
        error = ErrorInfo(type="TaskRevokedError", message=f"task {envelope.id} {message}")
        if reply_to:
            await self.reply(delivery, reply_to, envelope, TaskState.REVOKED, error=error)
        if self.recorder is not None:  # result store
            await self.recorder.record(
                self.make_reply(envelope, TaskState.REVOKED, error=error), envelope
            )
        await self._workflow_failed(delivery, envelope, error, TaskState.REVOKED)
        await self.ack(delivery)

    async def redelay(self, delivery: Delivery, envelope: TaskEnvelope, wait: timedelta) -> None:
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
            self._events.requeued()
            await asyncio.sleep(1.0)  # do not spin on a broker that refuses the delay
            await delivery.nack(requeue=True)
            return
        self._events.redelayed(envelope.task, envelope.id, seconds)
        await self.ack(delivery)

    async def requeue(self, delivery: Delivery) -> None:
        """Back to its queue, to run again (shutdown, a lost child, a retry not published)."""
        self._events.requeued()
        await delivery.nack(requeue=True)

    def _delayed(
        self,
        delivery: Delivery,
        body: bytes,
        seconds: float,
        headers: dict[str, Any] | None = None,
    ) -> OutgoingMessage:
        """A fresh copy that waits ``seconds`` in the delay levels, then lands in this queue
        (with the delivery's own headers unless given)."""
        headers = fresh_headers(delivery.properties.headers) if headers is None else headers
        properties = replace(delivery.properties, expiration=None, delivery_mode=2)
        if not self._delays.enabled:  # no delay levels declared: straight back to the queue
            return OutgoingMessage(
                body=body,
                properties=replace(properties, headers=headers),
                exchange="",
                routing_key=delivery.queue,
            )
        plan = plan_delay(
            round(seconds * 1000), prefix=self._delays.prefix, target_queue=delivery.queue
        )
        headers.update(plan.headers)
        return OutgoingMessage(
            body=body,
            properties=replace(properties, headers=headers),
            exchange=plan.exchange,
            routing_key=delivery.routing_key,
        )

    # -- publishing and settling ------------------------------------------------------------

    async def reply(
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
        if self._caller_gone(delivery, reply_to):
            return  # not even built
        reply = self.make_reply(
            envelope, state, result=result, error=error, meta=meta, retries=retries
        )
        await self.publish_reply(delivery, reply_to, reply)

    def _caller_gone(self, delivery: Delivery, reply_to: str) -> bool:
        """True when ``reply_to`` is a direct reply-to address whose caller has gone (its
        producer's connection closed: docs/protocol.md, "Callers"): nobody can read it."""
        if not reply_to.startswith(DIRECT_REPLY_TO_PREFIX):
            return False
        caller = delivery.properties.headers.get(HEADER_CALLER)
        return is_caller_queue(caller) and self._direct_replies.caller_gone(caller)

    def make_reply(
        self,
        envelope: TaskEnvelope,
        state: TaskState,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
        meta: dict[str, Any] | None = None,
        retries: int | None = None,
    ) -> Reply:
        """What the caller is told and the result store keeps."""
        return Reply.model_construct(
            id=envelope.id,
            task=envelope.task,
            state=state,
            result=result,
            error=error,
            meta=meta,
            retries=envelope.retries if retries is None else retries,
            worker=self._worker,
        )

    async def publish_reply(
        self, delivery: Delivery, reply_to: str, reply: Reply, *, celery: bool = False
    ) -> None:
        """Send ``reply`` to ``reply_to``: amqpq's format, or Celery's ``rpc://`` one for a
        Celery message (or when ``celery`` says so)."""
        props = delivery.properties
        direct = reply_to.startswith(DIRECT_REPLY_TO_PREFIX)
        if direct and self._caller_gone(delivery, reply_to):
            return  # its producer's connection closed: nobody can read this reply
        celery = celery or is_celery_message(props.headers)
        try:
            message = _encode_reply(celery, props, reply_to, reply)
        except (TypeError, ValueError) as exc:  # a result that cannot be serialised
            log.error("reply for id=%s cannot be encoded: %s", reply.id, exc)
            message = _encode_reply(
                celery,
                props,
                reply_to,
                reply.model_copy(
                    update={
                        "state": TaskState.FAILURE,
                        "result": None,
                        "error": ErrorInfo(type="EncodeError", message=str(exc)),
                    }
                ),
            )
        if direct:
            # Ahead of the ack, unconfirmed, on the reply connection: whatever a confirm
            # said, the task ran and its message is acked, and a caller who left cannot be
            # told. A reply the broker cannot deliver breaks that connection, not the acks.
            await self._direct_replies.send(message)
            return
        try:
            await self._replies.publish(message)
        except AmqpqError as exc:
            # The caller may be gone, or the connection dropped (then the ack will be stale
            # and the message redelivered, so the reply is sent again).
            log.warning("reply not delivered id=%s reply_to=%s: %s", reply.id, reply_to, exc)

    async def ack(self, delivery: Delivery) -> None:
        if delivery.settled:
            return
        if not await delivery.ack():
            self._events.stale_ack()
            message_id = delivery.properties.message_id
            if message_id is not None:  # the task id for amqpq producers
                self._done_unacked[message_id] = None
                if len(self._done_unacked) > _MAX_DONE_UNACKED:
                    self._done_unacked.popitem(last=False)

    def already_ran(self, task_id: str) -> bool:
        """Whether a redelivered task finished here but its ack was dropped (forgotten once
        asked: the caller acks it without running it again)."""
        if task_id in self._done_unacked:
            del self._done_unacked[task_id]
            return True
        return False


def _encode_reply(
    celery: bool, props: MessageProperties, reply_to: str, reply: Reply
) -> OutgoingMessage:
    if celery:  # a Celery caller: what its rpc:// backend reads
        return encode_celery_reply(
            reply, reply_to=reply_to, correlation_id=props.correlation_id or reply.id
        )
    return encode_reply(reply, reply_to=reply_to)
