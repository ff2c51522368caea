"""What amqpq's core needs from a broker: the transport seam, as typing protocols.

The worker, dead-lettering, redelivery, revocations and the scheduler type against
these protocols only; they never see a client library. Each protocol has sibling
implementations, none subclassing another:

- on RabbitMQ, in :mod:`amqpq.transport.consume` (aio-pika / aiormq):
  ``AioDelivery``, ``AioQueueConsumer`` and ``AioConfirmingPublisher`` (the last
  defined in :mod:`amqpq.transport.aio`), and ``AioReplyPublisher`` in
  :mod:`amqpq.transport.replies`;
- in memory, in :mod:`amqpq.transport.memory` (used by :mod:`amqpq.testing`):
  ``MemoryDelivery``, ``MemoryPublisher`` (both publishers; the test broker pulls
  deliveries itself instead of running a consumer).

A transport must provide:

- **deliveries** that carry the message free of the client library (body,
  :class:`~amqpq.codec.MessageProperties`, where it came from) and settle it
  exactly once: ``ack``, ``nack`` or ``reject`` return False instead of raising
  when the channel it came on is gone (the broker has requeued it already);
- **the reply path**: a :class:`ReplyPublisher` sends direct reply-to answers
  without a confirm, ahead of the delivery's settlement, on a path of its own (on
  RabbitMQ a connection of its own): a reply the broker cannot deliver may break
  that path, never the channel or connection that carries the acks. A reply that
  must be stored before the ack (a durable result queue) goes through a
  :class:`ConfirmingPublisher` instead;
- **a confirming publisher** whose ``publish`` returns only once the broker
  confirmed, and raises :class:`~amqpq.errors.UnroutableError`,
  :class:`~amqpq.errors.PublishNackedError` or :class:`~amqpq.errors.PublishError`
  (never a client library's exception), retrying once after a connection loss
  and a message the broker refused (nacked) after each pause of
  :data:`NACK_RETRY_PAUSES` before it raises;
- **a consumer** that hands each delivery of its queues to a
  :data:`DeliveryHandler` in a task of its own, and stops (``cancel``) without
  losing the deliveries already received.

How a transport is fast (ack coalescing, raw frames, write coalescing) stays
private to its implementation: nothing here promises or exposes it. Each client
library's errors are mapped once, in its mapping module
(:mod:`amqpq.transport.aio_mapping`, :mod:`amqpq.transport.pika_mapping`), in the
one wording of :mod:`amqpq.transport.wording`; the names on the wire come from
:mod:`amqpq.wire`.

The producers type against the sending protocols (:class:`SyncSendTransport` for
the synchronous producer, :class:`AsyncSendTransport` for the asyncio one): the App
builds the RabbitMQ ones from the URL (:class:`~amqpq.transport.blocking.BlockingBroker`
on pika, :class:`~amqpq.transport.aio.AsyncSendChannel` on aio-pika), and
:class:`amqpq.testing.TestBroker` hands the producers memory ones, the way an HTTP
client's tests swap its transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Container, Coroutine, Sequence
from typing import Any, Protocol

from amqpq.codec import MessageProperties, OutgoingMessage

__all__ = [
    "NACK_RETRY_PAUSES",
    "AsyncSendTransport",
    "ChordJoin",
    "ChordQueues",
    "ConfirmingPublisher",
    "Consumer",
    "Delivery",
    "DeliveryHandler",
    "LostCallback",
    "ReplyCallback",
    "ReplyPublisher",
    "SendLock",
    "SyncSendTransport",
]

NACK_RETRY_PAUSES = (0.1, 0.3, 1.0)
"""Seconds between the attempts of a publish the broker refused (basic.nack). A quorum
queue refuses messages while it elects a new leader after a node loss, for well under a
second; a full ``overflow=reject-publish`` queue refuses them until a consumer makes
room. Either way the sender learns it ~1.4 s later at most, and a refusal that passes
costs the caller a moment instead of an error."""

# -- consuming -----------------------------------------------------------------------------


class ReplyPublisher(Protocol):
    """Where a worker sends direct reply-to answers: apart from the deliveries it settles.

    On RabbitMQ 3.10 a reply to an address whose node is gone crashes the channel
    that publishes it, and the broker then closes that channel's whole connection:
    on the consuming connection that would requeue every unacked delivery and run
    the tasks again. So replies travel on a path that carries no acks, and a reply
    that cannot be sent is dropped (logged) while the task's ack goes ahead.
    """

    async def start(self) -> None:
        """Open the reply path (the worker does this as it starts)."""
        ...

    async def send(self, message: OutgoingMessage) -> bool:
        """Publish ``message`` unconfirmed and not mandatory; never raises. False (logged,
        one line) when it could not be handed to the broker: the caller goes on acking."""
        ...

    @property
    def skipped(self) -> int:
        """How many replies were not sent because :meth:`caller_gone` said so."""
        ...

    def caller_gone(self, caller: str) -> bool:
        """True once the broker said the caller queue ``caller`` (``amqpq-caller`` header,
        :data:`amqpq.wire.HEADER_CALLER`) is gone: its producer's connection closed, and
        nobody can read a direct reply-to answer any more. Never waits: an unknown or
        stale caller is looked up in the background and counts as present meanwhile."""
        ...

    async def close(self) -> None: ...


class Delivery(Protocol):
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


class ChordJoin(Protocol):
    """The messages of a chord's queue, held under exclusive access (docs/workflows.md)."""

    messages: list[bytes]
    """Every member result the queue held when the join began (duplicates included)."""

    async def finish(self) -> None:
        """The body is sent: delete the chord's queue with its messages, and let go."""
        ...

    async def release(self, drop: Sequence[int]) -> int:
        """Not complete: remove the messages at positions ``drop`` (duplicates), put the
        others back, let go; the number of messages ready in the queue after that."""
        ...


class ChordQueues(Protocol):
    """The per-chord queues that members' results go to and that the last one joins."""

    async def add(self, queue: str, message: OutgoingMessage, *, expires_ms: int) -> int:
        """Publish a member result to ``queue`` (confirmed; the queue is declared, with
        ``x-expires``, when it is missing); the number of messages ready in it after."""
        ...

    async def join(self, queue: str) -> ChordJoin | None:
        """Take every message of ``queue`` under exclusive access; None when another joiner
        holds it or the queue is gone (its chord is done)."""
        ...


# -- sending -------------------------------------------------------------------------------


ReplyCallback = Callable[[str | None, bytes], None]
"""Called with ``correlation_id`` and body of each direct reply-to reply."""
LostCallback = Callable[[str], None]
"""Called with a reason when the reply path broke: the direct replies in flight are lost."""


class SendLock(Protocol):
    """The lock a synchronous producer holds around every call into its transport."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...

    def release(self) -> None: ...


class SyncSendTransport(Protocol):
    """A synchronous producer's connection: confirmed publishes and the direct reply-to path.

    Every call but :meth:`wake_pump` is made under :attr:`lock`. Direct replies
    reach the producer only while it calls :meth:`pump`.
    """

    name: str
    """The connection's name (shown by the management UI)."""
    generation: int
    """Moves on each time the reply path is replaced (its direct replies are lost then)."""

    @property
    def lock(self) -> SendLock: ...

    @property
    def is_connected(self) -> bool: ...

    def listen(self, on_reply: ReplyCallback, on_lost: LostCallback) -> None:
        """Where direct replies go, and who hears that they were lost; set before first use."""
        ...

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def publish_many(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[tuple[BaseException | None, int]]:
        """Publish all, confirmed; per message its error (None when confirmed) and the
        generation of the reply path that took it."""
        ...

    def pump(self, time_limit: float) -> None:
        """Take in replies (and heartbeats) for up to ``time_limit`` seconds."""
        ...

    def wake_pump(self) -> None:
        """Thread-safe, without the lock: make a :meth:`pump` in another thread return soon."""
        ...

    def expect_replies(self, task_id: str, task: str | None, state: str) -> None:
        """Raise :class:`~amqpq.errors.ResultTimeoutError` when no reply for ``task_id`` can
        arrive while its caller waits (in memory, tasks run only when asked); else return."""
        ...

    def ensure_queue(self, name: str) -> None:
        """Make sure a durable result queue exists."""
        ...

    def collect(self, queue: str, wanted: Container[str]) -> list[tuple[str | None, bytes]]:
        """Take the replies for ``wanted`` task ids out of a result queue; leave the others."""
        ...


class AsyncSendTransport(Protocol):
    """An asyncio producer's connection: confirmed publishes and the direct reply-to path.

    Direct replies are handed to the ``on_reply`` of :meth:`listen` as they arrive.
    """

    name: str
    generation: int
    """Moves on each time the reply path is replaced (its direct replies are lost then)."""

    def listen(self, on_reply: ReplyCallback, on_lost: LostCallback) -> None:
        """Where direct replies go, and who hears that they were lost; set before first use."""
        ...

    async def connect(self) -> None:
        """Open the connection and the reply path now instead of on the first publish."""
        ...

    async def close(self) -> None: ...

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> int:
        """Publish on the reply path's channel, confirmed; the generation that took it."""
        ...

    def publish_plain(
        self, message: OutgoingMessage, *, timeout: float | None = 30.0
    ) -> Awaitable[None]:
        """Publish a message that expects no reply (events, revocations), confirmed."""
        ...

    def expect_replies(self, task_id: str, task: str | None, state: str) -> None:
        """As :meth:`SyncSendTransport.expect_replies`."""
        ...

    async def ensure_queue(self, name: str) -> None: ...

    async def collect(
        self, queue: str, wanted: Container[str]
    ) -> list[tuple[str | None, bytes]]: ...
