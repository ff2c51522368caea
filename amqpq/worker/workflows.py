"""What a worker sends when a workflow's task ends, before it acks the task's delivery.

After a success: the link callbacks, then the chain's next node with the result
prepended, or, at the end of a chord member's chain, the result to the chord's
queue, and the join when every member is there (docs/workflows.md, "The join").
After a failure for good (or a rejection, or a revocation): the errbacks, and a
reply for every task of the workflow that will now never run, so the caller's
``get()`` raises the member's error (a :class:`~amqpq.errors.ChordError` past a chord).

Everything is published confirmed before the ack: a worker that dies on the way
has its delivery redelivered, and the step runs again with the same task ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.envelope import ChordMember, ErrorInfo, Node, Reply, TaskEnvelope, TaskNode, TaskState
from amqpq.errors import AmqpqError, ArgumentsError, ConfigError, UnroutableError
from amqpq.producer import TaskPreparer
from amqpq.transport.base import ChordQueues, ConfirmingPublisher, Delivery
from amqpq.wire import HEADER_CHORD_INDEX, chord_queue_name
from amqpq.workflow import TaskCall, downstream, launch

__all__ = ["Continuations"]

log = logging.getLogger("amqpq.worker")

SendReply = Callable[[Delivery, str, Reply], Awaitable[None]]
Record = Callable[[Reply], Awaitable[None]]
"""Stores a state in the worker's result store (None: no store)."""
# Errors that sending again would not cure: the next task's route, options or arguments.
_PERMANENT = (ArgumentsError, ConfigError, UnroutableError)
# While the broker refuses a chord's body, the joiner keeps holding the join and tries again.
_BODY_RETRY_FIRST, _BODY_RETRY_MAX = 1.0, 30.0


class Continuations:
    """The workflow steps of one worker (built by ``factory.build_handler``)."""

    def __init__(
        self,
        preparer: TaskPreparer,
        publisher: ConfirmingPublisher,
        chords: ChordQueues | None,
        send_reply: SendReply,
        worker_name: str,
        record: Callable[[], Record | None] = lambda: None,
    ) -> None:
        self._preparer = preparer
        self._publisher = publisher
        self._chords = chords
        self._send_reply = send_reply
        self._worker = worker_name
        self._record = record

    # -- after a success ----------------------------------------------------------------------

    async def succeeded(self, delivery: Delivery, envelope: TaskEnvelope, result: Any) -> bool:
        """Send what follows a task that succeeded; False: not sent, requeue the delivery."""
        common = _common(delivery, envelope)
        calls = _callbacks(envelope.link, envelope.id, "link", result)
        chain = envelope.chain
        if chain:
            calls += launch(
                chain[0], value=result, rest=chain[1:], chord=envelope.chord, common=common
            )
        try:
            await self._send(calls)
        except _PERMANENT as exc:
            # The next task cannot be sent as described: the workflow ends here, its caller told.
            log.error("workflow of task %s id=%s stops: %s", envelope.task, envelope.id, exc)
            error = ErrorInfo(type=type(exc).__name__, message=str(exc))
            await self._fail_downstream(delivery, envelope, error, TaskState.FAILURE, chain, None)
            return True
        except AmqpqError as exc:
            log.error(
                "workflow of task %s id=%s: next step not sent (%s); message requeued",
                envelope.task,
                envelope.id,
                exc,
            )
            return False
        if not chain and envelope.chord is not None:
            return await self._report(delivery, envelope, envelope.chord, result, common)
        return True

    async def _send(self, calls: Sequence[TaskCall]) -> None:
        prepare = self._preparer.prepare
        messages = [
            prepare(c.name, c.args, c.kwargs, c.options, validate=False).message for c in calls
        ]
        if len(messages) == 1:
            await self._publisher.publish(messages[0])
        elif messages:  # a group: every confirm in flight at once
            outcomes = await asyncio.gather(
                *(self._publisher.publish(m) for m in messages), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

    # -- chords -------------------------------------------------------------------------------

    async def _report(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        chord: ChordMember,
        result: Any,
        common: Mapping[str, Any],
    ) -> bool:
        """A header member's result to its chord's queue; the join if it is the last."""
        if self._chords is None:
            raise ConfigError("this worker cannot join chords (no chord queues)")
        queue = chord_queue_name(self._preparer.prefix, chord.id)
        message = OutgoingMessage(
            body=json.dumps(
                {"index": chord.index, "id": envelope.id, "task": envelope.task, "result": result},
                separators=(",", ":"),
                default=str,
            ).encode(),
            properties=MessageProperties(
                message_id=f"{chord.id}.{chord.index}",
                correlation_id=envelope.id,
                type="amqpq.chord-result",
                headers={HEADER_CHORD_INDEX: chord.index},
            ),
            exchange="",
            routing_key=queue,
        )
        expires_ms = max(1, round(chord.expires * 1000))
        try:
            ready = await self._chords.add(queue, message, expires_ms=expires_ms)
        except AmqpqError as exc:
            log.error(
                "chord %s: result of member %d not stored (%s); requeued",
                chord.id,
                chord.index,
                exc,
            )
            return False
        if ready < chord.size:
            return True
        try:
            return await self._join(delivery, envelope, chord, queue, common)
        except AmqpqError as exc:
            log.error(
                "chord %s: join interrupted (%s); member %d requeued", chord.id, exc, chord.index
            )
            return False

    async def _join(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        chord: ChordMember,
        queue: str,
        common: Mapping[str, Any],
    ) -> bool:
        """Join under exclusive access; this delivery stays unacked until the join is done, so
        a crash on the way redelivers it and the join runs again."""
        assert self._chords is not None
        while True:
            held = await self._chords.join(queue)
            if held is None:  # another member joins (and checks again when it lets go)
                return True
            results: dict[int, Any] = {}
            duplicates: list[int] = []
            for position, body in enumerate(held.messages):
                try:
                    item = json.loads(body)
                    index = int(item["index"])
                except (ValueError, KeyError, TypeError):
                    duplicates.append(position)  # not a member result: dropped
                    continue
                if index in results or not 0 <= index < chord.size:
                    duplicates.append(position)
                else:
                    results[index] = item.get("result")
            if len(results) < chord.size:
                ready = await held.release(duplicates)
                if ready < chord.size:
                    return True
                continue  # results arrived while the queue was held: join again
            body_common = {**common, "parent_id": chord.id}
            calls = launch(
                chord.body,
                value=[results[i] for i in range(chord.size)],
                rest=chord.rest,
                chord=chord.outer,
                common=body_common,
            )
            if await self._send_body(delivery, chord, calls):
                log.info("chord %s: joined %d results, body sent", chord.id, chord.size)
            await held.finish()  # the body is out (or can never be): the queue goes
            return True

    async def _send_body(
        self, delivery: Delivery, chord: ChordMember, calls: Sequence[TaskCall]
    ) -> bool:
        """Send the body, holding the join while the broker refuses it; False when it can
        never be sent (the chord's caller is told)."""
        pause = _BODY_RETRY_FIRST
        while True:
            try:
                await self._send(calls)
                return True
            except _PERMANENT as exc:
                log.error("chord %s: body cannot be sent: %s", chord.id, exc)
                error = ErrorInfo(type=type(exc).__name__, message=str(exc))
                ids = downstream([chord.body, *chord.rest], chord.outer)
                await self._answer(
                    delivery, ids.same_error + ids.chord_ids, TaskState.FAILURE, error
                )
                return False
            except AmqpqError as exc:
                log.warning(
                    "chord %s: body not sent (%s); trying again in %.0fs, the join held",
                    chord.id,
                    exc,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, _BODY_RETRY_MAX)

    # -- after a failure ----------------------------------------------------------------------

    async def failed(
        self, delivery: Delivery, envelope: TaskEnvelope, error: ErrorInfo, state: TaskState
    ) -> None:
        """A task failed for good (or was rejected or revoked): errbacks, and every task of
        the workflow that will now never run answered with the error."""
        await self._fail_downstream(
            delivery, envelope, error, state, envelope.chain, envelope.chord
        )

    async def _fail_downstream(
        self,
        delivery: Delivery,
        envelope: TaskEnvelope,
        error: ErrorInfo,
        state: TaskState,
        chain: Sequence[Node] | None,
        chord: ChordMember | None,
    ) -> None:
        ids = downstream(chain, chord)
        await self._answer(delivery, ids.same_error, state, error)
        calls = _callbacks(envelope.link_error, envelope.id, "errback", envelope.id)
        if ids.chord is not None:
            member = ids.chord
            chord_error = ErrorInfo(
                type="ChordError",
                message=(
                    f"chord {member.id}: member {member.index} ({envelope.task} id={envelope.id}) "
                    f"{'failed' if state is TaskState.FAILURE else state.value.lower()}: "
                    f"{error.type}: {error.message}"
                ),
                traceback=error.traceback,
            )
            await self._answer(delivery, ids.chord_ids, TaskState.FAILURE, chord_error)
            calls += _callbacks(member.link_error, member.id, "errback", member.id)
        if calls:
            try:
                await self._send(calls)
            except AmqpqError as exc:  # the failure itself is recorded: never lose it for this
                log.error("errbacks of task %s id=%s not sent: %s", envelope.task, envelope.id, exc)

    async def _answer(
        self, delivery: Delivery, ids: Sequence[str], state: TaskState, error: ErrorInfo
    ) -> None:
        reply_to = delivery.properties.reply_to
        record = self._record()  # with a result store, those ids are stored as failed too
        if not reply_to and record is None:
            return
        for task_id in ids:
            reply = Reply.model_construct(
                id=task_id, task=None, state=state, error=error, retries=0, worker=self._worker
            )
            if reply_to:
                await self._send_reply(delivery, reply_to, reply)
            if record is not None:
                await record(reply)


def _common(delivery: Delivery, envelope: TaskEnvelope) -> dict[str, Any]:
    """What every task a workflow step sends carries: the caller's reply address (or none),
    this task as parent, the workflow's root."""
    reply_to = delivery.properties.reply_to
    common: dict[str, Any] = {
        "parent_id": envelope.id,
        "root_id": envelope.root_id or envelope.id,
    }
    if reply_to:
        common["reply_to"] = reply_to
    else:
        common["ignore_result"] = True
    return common


def _callbacks(
    nodes: Sequence[TaskNode] | None, task_id: str, kind: str, value: Any
) -> list[TaskCall]:
    """Link callbacks or errbacks: fire and forget, with ids derived from the task's, so a
    repeat after a redelivery is recognisable."""
    calls: list[TaskCall] = []
    for index, node in enumerate(nodes or ()):
        options = {"task_id": f"{task_id}.{kind}.{index}", **node.options}
        node = node.model_copy(update={"options": options})
        calls += launch(node, value=value, common={"ignore_result": True, "parent_id": task_id})
    return calls
