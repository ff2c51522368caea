"""Dead letters the worker publishes itself: bad input, failed tasks, exhausted retries.

A copy of the message goes to the queue's dead-letter exchange (``<prefix>.dlx``
with the queue's name as routing key, or the queue's own
``x-dead-letter-exchange`` / ``x-dead-letter-routing-key``) with the reason and
the error in headers; the original is acked once the broker confirmed the copy.
When the copy cannot be published (no DLX, or no DLQ bound: unroutable), the
original is rejected without requeue so the broker dead-letters it natively per
the queue's arguments (or drops it when the queue has none).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from amqpq.codec import (
    HEADER_DEAD_AT,
    HEADER_ERROR_MESSAGE,
    HEADER_ERROR_TYPE,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_REASON,
    OutgoingMessage,
    fresh_headers,
)
from amqpq.errors import AmqpqError
from amqpq.topology.infra import dead_letter_exchange_name
from amqpq.topology.models import Topology
from amqpq.transport.base import ConfirmingPublisher, Delivery

__all__ = ["DeadLetterTarget", "DeadLetterer", "dead_letter_targets"]

log = logging.getLogger("amqpq.worker")

_MAX_HEADER_TEXT = 1000


@dataclass(frozen=True, slots=True)
class DeadLetterTarget:
    """Where one queue's dead letters go; ``routing_key=None`` keeps the message's own key."""

    exchange: str
    routing_key: str | None


def dead_letter_targets(topology: Topology, queues: list[str]) -> dict[str, DeadLetterTarget]:
    """The dead-letter exchange and key of each consumed queue, as the topology declares them."""
    infra = topology.infrastructure
    targets: dict[str, DeadLetterTarget] = {}
    for name in queues:
        queue = topology.queue(name)
        arguments = queue.declare_arguments if queue is not None else {}
        exchange = arguments.get("x-dead-letter-exchange")
        if exchange is not None:
            key = arguments.get("x-dead-letter-routing-key")
            targets[name] = DeadLetterTarget(str(exchange), str(key) if key is not None else None)
        elif infra.dead_letters and (queue is None or queue.type in ("classic", "quorum")):
            targets[name] = DeadLetterTarget(dead_letter_exchange_name(infra.prefix), name)
    return targets


class DeadLetterer:
    def __init__(
        self, publisher: ConfirmingPublisher, targets: dict[str, DeadLetterTarget]
    ) -> None:
        self._publisher = publisher
        self._targets = targets

    async def dead_letter(
        self, delivery: Delivery, reason: str, error_type: str, error_message: str
    ) -> bool:
        """Publish the dead-letter copy and settle the original. True when the copy went out."""
        target = self._targets.get(delivery.queue)
        if target is not None:
            message = self._message(delivery, target, reason, error_type, error_message)
            try:
                await self._publisher.publish(message)
            except AmqpqError as exc:
                log.error(
                    "dead letter not published (%s); rejecting so the broker dead-letters it "
                    "queue=%s id=%s reason=%s",
                    exc,
                    delivery.queue,
                    delivery.properties.message_id,
                    reason,
                )
            else:
                await delivery.ack()
                return True
        else:
            log.error(
                "queue %s has no dead-letter exchange; rejecting id=%s reason=%s",
                delivery.queue,
                delivery.properties.message_id,
                reason,
            )
        await delivery.reject(requeue=False)
        return False

    @staticmethod
    def _message(
        delivery: Delivery,
        target: DeadLetterTarget,
        reason: str,
        error_type: str,
        error_message: str,
    ) -> OutgoingMessage:
        headers = fresh_headers(delivery.properties.headers)
        headers.update(
            {
                HEADER_REASON: reason,
                HEADER_ERROR_TYPE: error_type,
                HEADER_ERROR_MESSAGE: error_message[:_MAX_HEADER_TEXT],
                HEADER_ORIGINAL_QUEUE: delivery.queue,
                HEADER_ORIGINAL_EXCHANGE: delivery.exchange,
                HEADER_ORIGINAL_ROUTING_KEY: delivery.routing_key,
                HEADER_DEAD_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
            }
        )
        return OutgoingMessage(
            body=delivery.body,
            properties=replace(
                delivery.properties, headers=headers, delivery_mode=2, expiration=None
            ),
            exchange=target.exchange,
            routing_key=target.routing_key
            if target.routing_key is not None
            else delivery.routing_key,
            mandatory=True,
        )
