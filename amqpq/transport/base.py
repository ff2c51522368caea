"""What amqpq's core needs from a broker: the transport seam, as typing protocols.

The worker, dead-lettering, redelivery, revocations and the scheduler type against
these protocols only; they never see a client library. Each protocol has sibling
implementations, none subclassing another:

- on RabbitMQ, in :mod:`amqpq.transport.consume` (aio-pika / aiormq):
  ``AioDelivery``, ``AioQueueConsumer`` and ``AioConfirmingPublisher`` (the last
  defined in :mod:`amqpq.transport.aio`);
- in memory, in :mod:`amqpq.transport.memory` (used by :mod:`amqpq.testing`):
  ``MemoryDelivery``, ``MemoryPublisher`` (the test broker pulls deliveries
  itself instead of running a consumer).

A transport must provide:

- **deliveries** that carry the message free of the client library (body,
  :class:`~amqpq.codec.MessageProperties`, where it came from) and settle it
  exactly once: ``ack``, ``nack`` or ``reject`` return False instead of raising
  when the channel it came on is gone (the broker has requeued it already);
- **the reply path**: :meth:`ReplySender.send_reply` publishes a direct reply-to
  answer on the channel the delivery came on, ahead of its settlement and
  without a confirm; a reply that must be stored before the ack (a durable
  result queue) goes through a :class:`ConfirmingPublisher` instead;
- **a confirming publisher** whose ``publish`` returns only once the broker
  confirmed, and raises :class:`~amqpq.errors.UnroutableError`,
  :class:`~amqpq.errors.PublishNackedError` or :class:`~amqpq.errors.PublishError`
  (never a client library's exception), retrying once after a connection loss;
- **a consumer** that hands each delivery of its queues to a
  :data:`DeliveryHandler` in a task of its own, and stops (``cancel``) without
  losing the deliveries already received.

How a transport is fast (ack coalescing, raw frames, write coalescing) stays
private to its implementation: nothing here promises or exposes it. Each client
library's errors are mapped once, in its mapping module
(:mod:`amqpq.transport.aio_mapping`, :mod:`amqpq.transport.pika_mapping`), in the
one wording of :mod:`amqpq.transport.wording`; the names on the wire come from
:mod:`amqpq.wire`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from amqpq.codec import MessageProperties, OutgoingMessage

__all__ = [
    "ConfirmingPublisher",
    "Consumer",
    "Delivery",
    "DeliveryHandler",
    "ReplySender",
]

# -- consuming -----------------------------------------------------------------------------


class ReplySender(Protocol):
    """The reply path of a consumed message: direct reply-to on the channel it came on."""

    async def send_reply(self, message: OutgoingMessage) -> bool:
        """Publish ``message`` unconfirmed, ahead of the delivery's settlement; False when
        the channel it came on is gone (the broker requeued the delivery)."""
        ...


class Delivery(ReplySender, Protocol):
    """One consumed message: body, properties, where it came from, and how to settle it."""

    body: bytes
    properties: MessageProperties
    exchange: str
    routing_key: str
    redelivered: bool
    queue: str
    delivery_tag: int | None
    consumer_tag: str | None
    settled: bool
    """True once ack, nack or reject was called (each settles at most once)."""

    @property
    def channel_open(self) -> bool:
        """False once the channel it came on closed: the broker took the message back."""
        ...

    @property
    def delivery_count(self) -> int:
        """How many times the broker delivered it before (quorum queues' ``x-delivery-count``)."""
        ...

    async def ack(self) -> bool:
        """Ack; False when the channel it came on is gone (the broker requeued it)."""
        ...

    async def nack(self, requeue: bool = True) -> bool:
        """Negative ack; ``requeue=True`` puts it back for redelivery."""
        ...

    async def reject(self, requeue: bool = False) -> bool:
        """Reject; without requeue the broker dead-letters it per the queue's arguments."""
        ...


DeliveryHandler = Callable[[Delivery], Coroutine[Any, Any, None]]
"""What a :class:`Consumer` calls with each delivery, in a task of its own."""


class ConfirmingPublisher(Protocol):
    """Publishes and waits for the broker's confirm (dead letters, retries, durable results)."""

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> None:
        """Publish and wait for the confirm; retried once after a connection loss.

        Raises :class:`~amqpq.errors.UnroutableError` (returned or no such exchange),
        :class:`~amqpq.errors.PublishNackedError` or :class:`~amqpq.errors.PublishError`.
        """
        ...

    async def close(self) -> None: ...


class Consumer(Protocol):
    """Consumes queues and hands every delivery to a :data:`DeliveryHandler`."""

    tasks: set[asyncio.Task[None]]
    """The handler tasks still running (a graceful shutdown waits for them)."""

    @property
    def consumer_tags(self) -> list[str]: ...

    async def start(self, queues: Sequence[str], tag_for: Callable[[str], str]) -> None:
        """Start consuming ``queues``, each under the consumer tag ``tag_for(queue)``."""
        ...

    async def cancel(self) -> None:
        """Stop receiving; deliveries already received can still be settled."""
        ...

    async def close(self) -> None: ...


# -- producing -----------------------------------------------------------------------------
# (the sending transports of the sync and async producers go here)
