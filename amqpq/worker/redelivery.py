"""A bound on redeliveries for classic queues, which have no ``x-delivery-limit``.

Quorum queues count deliveries themselves and dead-letter a message after
``x-delivery-limit`` (reason ``delivery_limit``). Classic queues only say
``redelivered``: a task that kills its worker (segfault, OOM kill, ``os._exit``)
would come back forever. So the worker counts on the message itself:

- a delivery from a classic queue with ``redelivered`` set is not run: a copy
  with header ``amqpq-redeliveries: n + 1`` is published to the same queue
  (default exchange, routing key = queue, mandatory, confirmed), and only then
  is the original acked. The copy runs when its turn comes;
- once ``n + 1`` would exceed the limit, the message is dead-lettered with reason
  ``delivery_limit`` instead, like a quorum queue does.

So with limit L a poison message runs L + 1 times, as on a quorum queue with
``x-delivery-limit: L``. Trade-offs (docs/delays.md): the counted copy goes to
the *tail* of the queue, behind whatever was queued meanwhile (a quorum queue
returns it near the head); a connection lost between the copy's confirm and the
original's ack leaves both in the queue (one duplicate, at-least-once);
messages that were only prefetched when a worker died, and messages handed back
at shutdown, are counted too (quorum queues count those as well).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from amqpq.codec import HEADER_REDELIVERIES, OutgoingMessage
from amqpq.errors import AmqpqError
from amqpq.topology.models import Topology
from amqpq.transport.base import ConfirmingPublisher, Delivery
from amqpq.wire import HEADER_TASK
from amqpq.worker.deadletter import DeadLetterer
from amqpq.worker.stats import WorkerStats

__all__ = ["RedeliveryBound", "Verdict", "bounded_queues", "decide", "redeliveries"]

log = logging.getLogger("amqpq.worker")


@dataclass(frozen=True, slots=True)
class Verdict:
    """``run`` it now, ``count`` it (requeue a counted copy) or ``dead_letter`` it."""

    action: Literal["run", "count", "dead_letter"]
    redeliveries: int


def redeliveries(headers: Mapping[str, Any] | None) -> int:
    """The count a previous copy carried (0 when absent or not a non-negative integer)."""
    value = (headers or {}).get(HEADER_REDELIVERIES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def decide(*, redelivered: bool, headers: Mapping[str, Any] | None, limit: int) -> Verdict:
    """What to do with one delivery of a bounded queue; pure."""
    seen = redeliveries(headers)
    if not redelivered:
        return Verdict("run", seen)
    if seen + 1 > limit:
        return Verdict("dead_letter", seen + 1)
    return Verdict("count", seen + 1)


def bounded_queues(topology: Topology, queues: Sequence[str]) -> dict[str, int]:
    """The consumed classic queues and their limit (``infrastructure.delivery_limit``).

    Quorum queues are left to the broker; ``delivery_limit: null`` turns the bound off.
    """
    limit = topology.infrastructure.delivery_limit
    if limit is None:
        return {}
    bounded: dict[str, int] = {}
    for name in queues:
        queue = topology.queue(name)
        if queue is not None and queue.type == "classic":
            bounded[name] = limit
    return bounded


class RedeliveryBound:
    """The worker's hook: ``admit(delivery)`` is False when the delivery was settled here."""

    def __init__(
        self,
        publisher: ConfirmingPublisher,
        deadletters: DeadLetterer,
        limits: dict[str, int],
        stats: WorkerStats,
    ) -> None:
        self._publisher = publisher
        self._deadletters = deadletters
        self._limits = limits
        self._stats = stats

    async def admit(self, delivery: Delivery) -> bool:
        limit = self._limits.get(delivery.queue)
        if limit is None:
            return True
        verdict = decide(
            redelivered=delivery.redelivered, headers=delivery.properties.headers, limit=limit
        )
        if verdict.action == "run":
            if verdict.redeliveries:
                # A counted copy is a redelivery to everyone downstream (the task's
                # request, the "already ran here" check), although the broker says not.
                delivery.redelivered = True
            return True
        if verdict.action == "dead_letter":
            self._stats.dead_lettered["delivery_limit"] += 1
            log.warning(
                "message redelivered %d times, over the limit of %d: dead-lettered "
                "queue=%s id=%s task=%s",
                verdict.redeliveries,
                limit,
                delivery.queue,
                delivery.properties.message_id,
                delivery.properties.headers.get(HEADER_TASK, "-"),
            )
            await self._deadletters.dead_letter(
                delivery,
                "delivery_limit",
                "DeliveryLimitExceeded",
                f"came back unacked {verdict.redeliveries} times (limit: {limit}); "
                "its task may kill its worker process",
            )
            return False
        headers = {**delivery.properties.headers, HEADER_REDELIVERIES: verdict.redeliveries}
        copy = OutgoingMessage(
            body=delivery.body,
            properties=replace(delivery.properties, headers=headers),
            exchange="",
            routing_key=delivery.queue,
            mandatory=True,
        )
        try:
            await self._publisher.publish(copy)
        except AmqpqError as exc:
            # Better to run it uncounted this once than to lose it or spin on it.
            log.warning(
                "redelivery of id=%s not counted (%s); running it",
                delivery.properties.message_id,
                exc,
            )
            return True
        await delivery.ack()
        log.info(
            "redelivered message requeued as redelivery %d of %d queue=%s id=%s",
            verdict.redeliveries,
            limit,
            delivery.queue,
            delivery.properties.message_id,
        )
        return False
