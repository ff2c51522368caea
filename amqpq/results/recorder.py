"""The worker's side of a result store: every state written as it happens.

A final state is written before the message is acked (late ack covers the store): a
store that does not answer is retried with back-off, one log line per attempt, while
the message stays unacked, so a worker stopped meanwhile leaves it to run again and
nothing is lost. Intermediate states (STARTED, PROGRESS, RETRY's wait) are written
once; a failure to write one is logged, not retried (the final state follows).
"""

from __future__ import annotations

import asyncio
import logging

from amqpq.envelope import Reply, TaskEnvelope
from amqpq.registry import TaskRegistry
from amqpq.results.base import ResultStore, ResultStoreError

__all__ = ["ResultRecorder"]

log = logging.getLogger("amqpq.worker")

_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 30.0


class ResultRecorder:
    """Writes the states of one worker's tasks to its App's result store."""

    __slots__ = ("_expires", "_registry", "_store")

    def __init__(self, store: ResultStore, registry: TaskRegistry, expires: float) -> None:
        self._store = store
        self._registry = registry
        self._expires = expires

    def expires_for(self, envelope: TaskEnvelope | None, task_name: str | None) -> float | None:
        """Per call (the envelope), else per task, else the App's ``result_expires``;
        None when the task ignores its results (``ignore_result=True``)."""
        task = self._registry.find(task_name) if task_name else None
        if task is not None and task.options.ignore_result:
            return None
        if envelope is not None and envelope.result_expires is not None:
            return envelope.result_expires
        if task is not None and task.options.result_expires is not None:
            return task.options.result_expires
        return self._expires

    async def record(self, reply: Reply, envelope: TaskEnvelope | None) -> None:
        """Store a state as the worker tells it to the caller; a final one is retried until
        the store has it (a refused delivery may have no envelope)."""
        expires = self.expires_for(envelope, reply.task)
        if expires is not None:
            await self._save(reply, expires, final=reply.state.is_final)

    async def _save(self, reply: Reply, expires: float, *, final: bool) -> None:
        backoff = _FIRST_BACKOFF
        attempt = 1
        while True:
            try:
                await self._store.asave(reply, expires)
                return
            except ResultStoreError as exc:
                if not final:
                    log.warning("state %s of id=%s not stored: %s", reply.state, reply.id, exc)
                    return
                log.error(
                    "result of id=%s (%s) not stored, attempt %d, retrying in %.1fs; "
                    "the message stays unacked: %s",
                    reply.id,
                    reply.state,
                    attempt,
                    backoff,
                    exc,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            attempt += 1
