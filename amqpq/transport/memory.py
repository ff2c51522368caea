"""An in-memory broker: RabbitMQ's exchange and queue semantics without RabbitMQ.

Routing is :class:`amqpq.topology.routing.Router` over the *effective* topology
(the file plus the dead-letter exchange, the DLQs and the delay levels), so a
message reaches exactly the queues it would reach on the broker: direct, topic,
fanout and headers exchanges, exchange-to-exchange bindings, alternate
exchanges, the default exchange. Queues keep RabbitMQ's behaviour where amqpq
relies on it:

- ``x-message-ttl`` (and the ``expiration`` property) expire messages at the
  head of the queue and dead-letter them (reason ``expired``) through
  ``x-dead-letter-exchange`` / ``x-dead-letter-routing-key`` with ``x-death``
  headers. That is all the broker-side delay levels need, so countdown, eta and
  retry backoff travel the same way they do on RabbitMQ;
- reject without requeue dead-letters (reason ``rejected``); nack with requeue
  puts the message back first in line, marked redelivered; quorum queues count
  deliveries (``x-delivery-count``) and dead-letter past ``x-delivery-limit``;
- ``x-max-length`` drops (and dead-letters) the oldest message, or refuses the
  publish with ``x-overflow: reject-publish``; ``x-max-priority`` orders by priority.

Time is virtual: it starts at 0 and moves only through :meth:`MemoryBroker.advance`,
so a test fast-forwards a one-hour countdown instead of sleeping. A mandatory
publish that reaches no queue raises :class:`~amqpq.errors.UnroutableError`, as the
real producers do.

:class:`MemoryDelivery` and :class:`MemoryPublisher` implement the
:class:`~amqpq.transport.base.Delivery` and
:class:`~amqpq.transport.base.ConfirmingPublisher` protocols, siblings of the
aio-pika ones in :mod:`amqpq.transport.consume`, so the worker's own
message handler runs unchanged on top of this broker (see :mod:`amqpq.testing`).
"""

from __future__ import annotations

import bisect
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from amqpq.celery_wire import is_celery_message
from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.errors import AmqpqError, PublishNackedError, ResultTimeoutError, UnroutableError
from amqpq.topology.infra import effective_topology
from amqpq.topology.models import Queue, Topology
from amqpq.topology.routing import Router
from amqpq.wire import (
    DIRECT_REPLY_TO,
    HEADER_DELIVERY_COUNT,
    RESULT_QUEUE_ARGUMENTS,
    deliveries_before,
)

__all__ = [
    "MemoryAsyncSendTransport",
    "MemoryBroker",
    "MemoryChordJoin",
    "MemoryChordQueues",
    "MemoryDelivery",
    "MemoryPublisher",
    "MemoryQueue",
    "MemorySendTransport",
    "StoredMessage",
    "shift_body_times",
]


ReplyHandler = Callable[[str | None, bytes], None]


@dataclass(slots=True)
class StoredMessage:
    """One message in one queue (a publish that reaches two queues makes two)."""

    body: bytes
    properties: MessageProperties
    exchange: str
    routing_key: str
    seq: int
    """Arrival order across the whole broker: consumers take the oldest first."""
    born_virtual: int
    """The virtual clock (µs) when a client published it (kept across dead-lettering)."""
    born_real: float
    redelivered: bool = False
    deliveries: int = 0
    expires_at: int | None = None
    """Virtual time (µs) at which it expires in its current queue (TTL), if any."""

    @property
    def headers(self) -> dict[str, Any]:
        return self.properties.headers


@dataclass(slots=True)
class MemoryQueue:
    """A queue: ready messages in delivery order and delivered ones awaiting their ack."""

    name: str
    type: str = "classic"
    arguments: dict[str, Any] = field(default_factory=dict)
    ready: list[StoredMessage] = field(default_factory=list)
    unacked: dict[int, StoredMessage] = field(default_factory=dict)

    @classmethod
    def from_model(cls, queue: Queue) -> MemoryQueue:
        return cls(name=queue.name, type=queue.type, arguments=queue.declare_arguments)

    @property
    def ttl(self) -> int | None:
        value = self.arguments.get("x-message-ttl")
        return value if isinstance(value, int) else None

    @property
    def max_priority(self) -> int | None:
        value = self.arguments.get("x-max-priority")
        return value if isinstance(value, int) else None

    def _rank(self, message: StoredMessage) -> tuple[int, int]:
        top = self.max_priority
        priority = min(message.properties.priority or 0, top) if top else 0
        return (-priority, message.seq)

    def push(self, message: StoredMessage) -> None:
        if self.max_priority:
            keys = [self._rank(m) for m in self.ready]
            self.ready.insert(bisect.bisect_right(keys, self._rank(message)), message)
        else:
            self.ready.append(message)

    def requeue(self, message: StoredMessage) -> None:
        # RabbitMQ puts a requeued message back near its old place: first in line.
        if self.max_priority:
            self.push(message)
        else:
            self.ready.insert(0, message)


class MemoryBroker:
    """The broker's state for one topology (one vhost). Thread-safe; cheap to create."""

    def __init__(self, topology: Topology) -> None:
        self.topology = effective_topology(topology)
        self.router = Router(self.topology)
        self.queues: dict[str, MemoryQueue] = {
            q.name: MemoryQueue.from_model(q) for q in self.topology.queues
        }
        self.micros = 0
        """Virtual microseconds since the broker was created (integers: delays add up exactly)."""
        self.lock = threading.RLock()
        self.on_direct_reply: ReplyHandler | None = None
        """Where replies to ``amq.rabbitmq.reply-to`` go (there is one caller here)."""
        self.dropped: list[StoredMessage] = []
        """Messages the broker discarded: dead-lettered with nowhere to go, or to no DLX."""
        self._seq = itertools.count(1)
        self._tags = itertools.count(1)
        self._unacked: dict[int, str] = {}  # delivery tag -> queue

    # -- objects ------------------------------------------------------------------------------

    def queue(self, name: str) -> MemoryQueue:
        try:
            return self.queues[name]
        except KeyError:
            known = ", ".join(sorted(q for q in self.queues if not q.startswith("amq"))) or "none"
            raise KeyError(f"no queue named {name!r} (queues: {known})") from None

    def declare_queue(self, name: str, arguments: Mapping[str, Any] | None = None) -> MemoryQueue:
        """A queue outside the topology file (a durable result queue); idempotent."""
        with self.lock:
            queue = self.queues.get(name)
            if queue is None:
                queue = self.queues[name] = MemoryQueue(name=name, arguments=dict(arguments or {}))
            return queue

    def route(
        self, exchange: str, routing_key: str = "", headers: Mapping[str, Any] | None = None
    ) -> set[str]:
        """The queues a publish would reach (the Router, plus queues declared here)."""
        if exchange == "":
            return {routing_key} if routing_key in self.queues else set()
        return self.router.targets(exchange, routing_key, headers)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, message: OutgoingMessage) -> dict[str, int]:
        """Route and enqueue; returns the queues reached, each with its copy's ``seq``.

        Raises :class:`UnroutableError` for a mandatory message that reaches no queue
        (or any message to an exchange that does not exist), and
        :class:`PublishNackedError` when a full ``reject-publish`` queue refuses it.
        """
        if message.exchange == "" and message.routing_key.startswith(DIRECT_REPLY_TO):
            handler = self.on_direct_reply
            if handler is not None:
                handler(message.properties.correlation_id, message.body)
            return {}
        with self.lock:
            if message.exchange and self.router.exchange_type(message.exchange) is None:
                raise UnroutableError(f"exchange {message.exchange!r} does not exist")
            targets = self.route(message.exchange, message.routing_key, message.properties.headers)
            if not targets:
                if message.mandatory:
                    raise UnroutableError(
                        f"no queue is bound for exchange {message.exchange!r} with routing key "
                        f"{message.routing_key!r}: the message was returned (NO_ROUTE)"
                    )
                return {}
            full = [q for q in sorted(targets) if self._refuses(self.queues[q])]
            if full:
                raise PublishNackedError(
                    f"RabbitMQ refused the message for exchange {message.exchange!r}: queue "
                    f"{full[0]!r} is full (x-overflow reject-publish)"
                )
            stored = StoredMessage(
                body=message.body,
                properties=message.properties,
                exchange=message.exchange,
                routing_key=message.routing_key,
                seq=0,
                born_virtual=self.micros,
                born_real=time.time(),
            )
            return {name: self._enqueue(self.queues[name], stored) for name in sorted(targets)}

    def _refuses(self, queue: MemoryQueue) -> bool:
        limit = queue.arguments.get("x-max-length")
        overflow = queue.arguments.get("x-overflow", "drop-head")
        return (
            isinstance(limit, int)
            and overflow in ("reject-publish", "reject-publish-dlx")
            and len(queue.ready) >= limit
        )

    def _enqueue(self, queue: MemoryQueue, message: StoredMessage) -> int:
        ttl = queue.ttl
        expiration = message.properties.expiration
        if expiration is not None and expiration.isdigit():
            ttl = int(expiration) if ttl is None else min(ttl, int(expiration))
        copy = replace(
            message,
            seq=next(self._seq),
            expires_at=self.micros + ttl * 1000 if ttl is not None else None,
            redelivered=False,
            deliveries=0,
        )
        queue.push(copy)
        limit = queue.arguments.get("x-max-length")
        if isinstance(limit, int):
            while len(queue.ready) > limit:
                self._dead_letter(queue, queue.ready.pop(0), "maxlen")
        return copy.seq

    # -- consuming ----------------------------------------------------------------------------

    def next_ready(self, queues: Iterable[str]) -> tuple[str, StoredMessage, int] | None:
        """Take the oldest ready message of these queues: (queue, message, delivery tag)."""
        with self.lock:
            self._expire(self.micros)
            best: MemoryQueue | None = None
            for name in queues:
                queue = self.queues.get(name)
                if (
                    queue is not None
                    and queue.ready
                    and (best is None or queue.ready[0].seq < best.ready[0].seq)
                ):
                    best = queue
            if best is None:
                return None
            return self._deliver(best, best.ready.pop(0))

    def take(self, queue: str, seq: int) -> tuple[str, StoredMessage, int] | None:
        """Take one particular ready message (by ``seq``), e.g. to run it right away."""
        with self.lock:
            found = self.queues.get(queue)
            if found is None:
                return None
            for index, message in enumerate(found.ready):
                if message.seq == seq:
                    del found.ready[index]
                    return self._deliver(found, message)
            return None

    def _deliver(
        self, queue: MemoryQueue, message: StoredMessage
    ) -> tuple[str, StoredMessage, int]:
        tag = next(self._tags)
        message.deliveries += 1
        queue.unacked[tag] = message
        self._unacked[tag] = queue.name
        return queue.name, message, tag

    def settle(self, tag: int, how: str, requeue: bool = False) -> bool:
        """``ack``, ``nack`` or ``reject`` a delivery; False for an unknown tag."""
        with self.lock:
            name = self._unacked.pop(tag, None)
            if name is None:
                return False
            queue = self.queues[name]
            message = queue.unacked.pop(tag)
            if how == "ack":
                return True
            if requeue:
                limit = queue.arguments.get("x-delivery-limit")
                if queue.type == "quorum" and isinstance(limit, int) and message.deliveries > limit:
                    self._dead_letter(queue, message, "delivery_limit")
                    return True
                message.redelivered = True
                queue.requeue(message)
                return True
            self._dead_letter(queue, message, "rejected")
            return True

    # -- time ---------------------------------------------------------------------------------

    @property
    def clock(self) -> float:
        """Virtual seconds since the broker was created; only :meth:`advance` moves it."""
        return self.micros / 1e6

    def next_due(self) -> float | None:
        """The virtual time at which the next message expires somewhere (a delay ends)."""
        with self.lock:
            times = [
                q.ready[0].expires_at
                for q in self.queues.values()
                if q.ready and q.ready[0].expires_at is not None
            ]
            return min(times) / 1e6 if times else None

    def advance(self, seconds: float) -> None:
        """Move the clock forward: messages whose TTL ends meanwhile dead-letter in time order."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self.lock:
            self._expire(self.micros + _micros(seconds))

    def advance_to(self, when: float) -> None:
        with self.lock:
            self._expire(max(_micros(when), self.micros))

    def _expire(self, until: int) -> None:
        """Expire every message due by ``until``, earliest first (the delay levels chain)."""
        while True:
            head: MemoryQueue | None = None
            for queue in self.queues.values():
                if not queue.ready:
                    continue
                due = queue.ready[0].expires_at
                if due is not None and due <= until:
                    head_due = head.ready[0].expires_at if head is not None else None
                    if head_due is None or due < head_due:
                        head = queue
            if head is None:
                break
            message = head.ready.pop(0)
            assert message.expires_at is not None
            self.micros = max(self.micros, message.expires_at)
            self._dead_letter(head, message, "expired")
        self.micros = max(self.micros, until)

    # -- dead-lettering -----------------------------------------------------------------------

    def _dead_letter(self, queue: MemoryQueue, message: StoredMessage, reason: str) -> None:
        exchange = queue.arguments.get("x-dead-letter-exchange")
        if not isinstance(exchange, str):
            self.dropped.append(message)
            return
        key = queue.arguments.get("x-dead-letter-routing-key")
        routing_key = key if isinstance(key, str) else message.routing_key
        headers = _with_death(message, queue.name, reason, time.time())
        properties = replace(message.properties, headers=headers, expiration=None)
        targets = self.route(exchange, routing_key, headers)
        if not targets:
            self.dropped.append(message)
            return
        moved = replace(message, properties=properties, exchange=exchange, routing_key=routing_key)
        for name in sorted(targets):
            self._enqueue(self.queues[name], moved)


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _with_death(message: StoredMessage, queue: str, reason: str, now: float) -> dict[str, Any]:
    """The headers RabbitMQ writes when it dead-letters: ``x-death`` and first/last death."""
    headers = dict(message.properties.headers)
    deaths: list[dict[str, Any]] = [dict(d) for d in headers.get("x-death") or ()]
    entry = next((d for d in deaths if d.get("queue") == queue and d.get("reason") == reason), None)
    if entry is not None:
        deaths.remove(entry)
        entry["count"] = int(entry.get("count", 1)) + 1
    else:
        entry = {
            "count": 1,
            "reason": reason,
            "queue": queue,
            "exchange": message.exchange,
            "routing-keys": [message.routing_key],
        }
    entry["time"] = datetime.fromtimestamp(now).astimezone()
    headers["x-death"] = [entry, *deaths]
    if "x-first-death-queue" not in headers:
        headers["x-first-death-queue"] = queue
        headers["x-first-death-reason"] = reason
        headers["x-first-death-exchange"] = message.exchange
    headers["x-last-death-queue"] = queue
    headers["x-last-death-reason"] = reason
    headers["x-last-death-exchange"] = message.exchange
    return headers


def shift_body_times(body: bytes, seconds: float) -> bytes:
    """A task body whose ``eta`` and ``expires`` are moved by ``seconds`` (else unchanged).

    The worker compares these with the wall clock; the memory broker's clock is
    virtual, so a delivery shifts them by (wall time passed - virtual time passed)
    since the publish, and the worker sees the virtual time instead.
    """
    if not seconds or (b'"eta"' not in body and b'"expires"' not in body):
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict):
        return body
    shifted = _shifted_times(data, seconds)
    if not shifted:
        return body
    data.update(shifted)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _shifted_times(values: Mapping[str, Any], seconds: float) -> dict[str, str]:
    """``eta`` and ``expires`` ISO strings of ``values`` moved by ``seconds``."""
    shifted: dict[str, str] = {}
    for key in ("eta", "expires"):
        value = values.get(key)
        if isinstance(value, str):
            try:
                when = datetime.fromisoformat(value)
            except ValueError:
                continue
            shifted[key] = (when + timedelta(seconds=seconds)).isoformat()
    return shifted


class MemoryDelivery:
    """A :class:`~amqpq.transport.base.Delivery` taken from a :class:`MemoryBroker` queue."""

    def __init__(
        self, broker: MemoryBroker, queue: str, message: StoredMessage, tag: int, consumer: str
    ) -> None:
        self._broker = broker
        shift = (time.time() - message.born_real) - (broker.micros - message.born_virtual) / 1e6
        self.body: bytes = shift_body_times(message.body, shift)
        headers = dict(message.properties.headers)
        if shift and is_celery_message(headers):  # a Celery message's times are headers
            headers.update(_shifted_times(headers, shift))
        if broker.queues[queue].type == "quorum" and message.deliveries > 1:
            headers[HEADER_DELIVERY_COUNT] = message.deliveries - 1
        self.properties: MessageProperties = replace(message.properties, headers=headers)
        self.exchange: str = message.exchange
        self.routing_key: str = message.routing_key
        self.redelivered: bool = message.redelivered
        self.queue: str = queue
        self.delivery_tag: int | None = tag
        self.consumer_tag: str | None = consumer
        self.settled = False

    def __repr__(self) -> str:
        return f"<MemoryDelivery {self.queue}#{self.delivery_tag} id={self.properties.message_id}>"

    @property
    def channel_open(self) -> bool:
        """Always True: the memory broker has no channels to lose."""
        return True

    @property
    def delivery_count(self) -> int:
        return deliveries_before(self.properties.headers, self.redelivered)

    async def ack(self) -> bool:
        return self._settle("ack")

    async def nack(self, requeue: bool = True) -> bool:
        return self._settle("nack", requeue)

    async def reject(self, requeue: bool = False) -> bool:
        return self._settle("reject", requeue)

    def _settle(self, how: str, requeue: bool = False) -> bool:
        if self.settled:
            return False
        self.settled = True
        assert self.delivery_tag is not None
        return self._broker.settle(self.delivery_tag, how, requeue)


class MemoryPublisher:
    """A :class:`~amqpq.transport.base.ConfirmingPublisher` and
    :class:`~amqpq.transport.base.ReplyPublisher` into a :class:`MemoryBroker` (the
    "confirm" is immediate; the memory broker has no connection to lose)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._memory = broker

    async def start(self) -> None:
        return None

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> None:
        self._memory.publish(message)

    async def send(self, message: OutgoingMessage) -> bool:
        self._memory.publish(message)
        return True

    @property
    def skipped(self) -> int:
        return 0

    def caller_gone(self, caller: str) -> bool:
        return False  # the memory broker's callers live as long as the test

    async def close(self) -> None:
        return None


class MemoryChordQueues:
    """:class:`~amqpq.transport.base.ChordQueues` in memory: the test broker runs one task
    at a time on its loop, so a join never meets another (nothing here awaits)."""

    def __init__(self) -> None:
        self.queues: dict[str, list[bytes]] = {}
        self._held: set[str] = set()

    async def add(self, queue: str, message: OutgoingMessage, *, expires_ms: int) -> int:
        found = self.queues.setdefault(queue, [])
        found.append(message.body)
        return len(found)

    async def join(self, queue: str) -> MemoryChordJoin | None:
        if queue in self._held or queue not in self.queues:
            return None
        self._held.add(queue)
        return MemoryChordJoin(self, queue)


class MemoryChordJoin:
    def __init__(self, owner: MemoryChordQueues, queue: str) -> None:
        self._owner = owner
        self._queue = queue
        self.messages: list[bytes] = list(owner.queues[queue])

    async def finish(self) -> None:
        self._owner.queues.pop(self._queue, None)
        self._owner._held.discard(self._queue)

    async def release(self, drop: Sequence[int]) -> int:
        dropped = set(drop)
        kept = [m for i, m in enumerate(self.messages) if i not in dropped]
        self._owner.queues[self._queue] = (
            kept + self._owner.queues[self._queue][len(self.messages) :]
        )
        self._owner._held.discard(self._queue)
        return len(self._owner.queues[self._queue])


# -- the producers' transports (amqpq.transport.base: SyncSendTransport, AsyncSendTransport) ----

Published = Callable[[OutgoingMessage, Mapping[str, int]], None]
"""Told of each message a producer published: the message and the queues' copies (``seq``)."""
AsyncPublished = Callable[[OutgoingMessage, Mapping[str, int]], Awaitable[None]]

_NO_REPLY_HINT = "replies arrive only while tasks run on this broker"


class _FreeLock:
    """The producer's transport lock, free: the memory broker locks itself, and a task run
    inside a publish (eager mode) may send from another thread meanwhile."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return True

    def release(self) -> None:
        return


class _MemorySending:
    """What both producer transports into a :class:`MemoryBroker` share: the reply path.

    Direct replies are handed over while the tasks run, never while a caller
    waits, so waiting for one that has not come raises at once (with ``hint``).
    """

    def __init__(self, broker: MemoryBroker, *, name: str, hint: str) -> None:
        self.memory = broker
        self.name = name
        self.generation = 1
        self.hint = hint

    def listen(self, on_reply: ReplyHandler, on_lost: Callable[[str], None]) -> None:
        previous = self.memory.on_direct_reply
        if previous is None:
            self.memory.on_direct_reply = on_reply
            return

        def both(correlation_id: str | None, body: bytes) -> None:
            previous(correlation_id, body)
            on_reply(correlation_id, body)

        self.memory.on_direct_reply = both

    def expect_replies(self, task_id: str, task: str | None, state: str) -> None:
        raise ResultTimeoutError(
            f"no result for task {task_id} ({task or 'unknown task'}) yet (state {state}): "
            f"{self.hint}"
        )

    def _ensure_queue(self, name: str) -> None:
        self.memory.declare_queue(name, RESULT_QUEUE_ARGUMENTS)

    def _collect(self, queue: str, wanted: Container[str]) -> list[tuple[str | None, bytes]]:
        memory = self.memory
        memory.declare_queue(queue, RESULT_QUEUE_ARGUMENTS)
        with memory.lock:
            ready = memory.queue(queue).ready
            found = [m for m in ready if m.properties.correlation_id in wanted]
            for message in found:
                ready.remove(message)
        return [(m.properties.correlation_id, m.body) for m in found]


class MemorySendTransport(_MemorySending):
    """A synchronous producer's transport into a :class:`MemoryBroker`: every publish is
    confirmed (or refused) at once; ``on_published`` hears of each one."""

    def __init__(
        self,
        broker: MemoryBroker,
        *,
        on_published: Published | None = None,
        name: str = "memory",
        hint: str = _NO_REPLY_HINT,
    ) -> None:
        super().__init__(broker, name=name, hint=hint)
        self.lock = _FreeLock()
        self.is_connected = True
        self._on_published = on_published

    def connect(self) -> None:
        return

    def close(self) -> None:
        return

    def publish_many(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[tuple[BaseException | None, int]]:
        outcomes: list[tuple[BaseException | None, int]] = []
        for message in messages:
            try:
                copies = self.memory.publish(message)
            except AmqpqError as exc:
                outcomes.append((exc, self.generation))
                continue
            outcomes.append((None, self.generation))
            if self._on_published is not None:
                self._on_published(message, copies)
        return outcomes

    def pump(self, time_limit: float) -> None:
        return

    def wake_pump(self) -> None:
        return

    def ensure_queue(self, name: str) -> None:
        self._ensure_queue(name)

    def collect(self, queue: str, wanted: Container[str]) -> list[tuple[str | None, bytes]]:
        return self._collect(queue, wanted)


class MemoryAsyncSendTransport(_MemorySending):
    """An asyncio producer's transport into a :class:`MemoryBroker` (see
    :class:`MemorySendTransport`); ``on_published`` is awaited after each publish."""

    def __init__(
        self,
        broker: MemoryBroker,
        *,
        on_published: AsyncPublished | None = None,
        name: str = "memory",
        hint: str = _NO_REPLY_HINT,
    ) -> None:
        super().__init__(broker, name=name, hint=hint)
        self._on_published = on_published

    async def connect(self) -> None:
        return

    async def close(self) -> None:
        return

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> int:
        copies = self.memory.publish(message)
        if self._on_published is not None:
            await self._on_published(message, copies)
        return self.generation

    async def publish_plain(
        self, message: OutgoingMessage, *, timeout: float | None = 30.0
    ) -> None:
        self.memory.publish(message)

    async def ensure_queue(self, name: str) -> None:
        self._ensure_queue(name)

    async def collect(self, queue: str, wanted: Container[str]) -> list[tuple[str | None, bytes]]:
        return self._collect(queue, wanted)
