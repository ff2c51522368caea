"""What an :class:`~amqpq.rpc.AsyncResult` made from a task id reads: a result store."""

from __future__ import annotations

from amqpq.results.base import ResultStore, StoredResult
from amqpq.rpc import PendingResult

__all__ = ["StoreBackend"]


def _take(pending: PendingResult, stored: StoredResult | None) -> None:
    pending.reply = stored.reply if stored is not None else None
    if stored is not None and pending.task is None:
        pending.task = stored.reply.task


class StoreBackend:
    """A :class:`~amqpq.rpc.ResultBackend` over a result store: every read asks the
    store (so any number of readers, in any process, see the same state); waiting
    wakes on the store's notifications."""

    __slots__ = ("store",)

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def refresh(self, pending: PendingResult) -> None:
        _take(pending, self.store.load(pending.id))

    async def arefresh(self, pending: PendingResult) -> None:
        _take(pending, await self.store.aload(pending.id))

    def wait(self, pending: PendingResult, timeout: float | None) -> None:
        _take(pending, self.store.wait(pending.id, timeout))

    async def await_(self, pending: PendingResult, timeout: float | None) -> None:
        _take(pending, await self.store.await_final(pending.id, timeout))

    def forget(self, pending: PendingResult) -> None:
        self.store.forget(pending.id)
        pending.reply = None

    async def aforget(self, pending: PendingResult) -> None:
        await self.store.aforget(pending.id)
        pending.reply = None
