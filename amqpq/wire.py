"""The protocol facts: every name amqpq puts on the wire or on the broker, in one place.

Sender and receiver (producer and worker, delay planner and topology declarer,
amqpq and a bare client in another language) must agree on these strings; they
agree because they all import them from here. docs/architecture.md and
docs/protocol.md describe what each one means. Pure constants and string
builders: this module imports nothing from amqpq, so any layer may use it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, TypeGuard

__all__ = [
    "BEAT_HEADER_SCHEDULE",
    "BEAT_HEADER_TICK",
    "BEAT_LEADER_QUEUE_SUFFIX",
    "BROKER_DEAD_LETTER_HEADERS",
    "CALLER_QUEUE_PREFIX",
    "CELERY_HEADER_ETA",
    "CELERY_HEADER_ID",
    "CELERY_HEADER_RETRIES",
    "CELERY_HEADER_TASK",
    "DELAY_HEADER_PREFIX",
    "DELAY_LEVELS",
    "DIRECT_REPLY_TO",
    "DIRECT_REPLY_TO_PREFIX",
    "HEADER_CALLER",
    "HEADER_CHORD_INDEX",
    "HEADER_CHORD_MARKER",
    "HEADER_DEAD_AT",
    "HEADER_DELAY_EXCHANGE",
    "HEADER_DELAY_QUEUE",
    "HEADER_DELIVERY_COUNT",
    "HEADER_ERROR_MESSAGE",
    "HEADER_ERROR_TYPE",
    "HEADER_ORIGINAL_EXCHANGE",
    "HEADER_ORIGINAL_QUEUE",
    "HEADER_ORIGINAL_ROUTING_KEY",
    "HEADER_PROTOCOL",
    "HEADER_REASON",
    "HEADER_REDELIVERIES",
    "HEADER_TASK",
    "MAP_TASK",
    "MAX_DELAY_MS",
    "QUEUE_TYPE_ARGUMENT",
    "RESULT_QUEUE_ARGUMENTS",
    "STARMAP_TASK",
    "TRANSIENT_QUEUE_ARGUMENTS",
    "beat_consumer_tag",
    "beat_leader_queue_name",
    "caller_queue_name",
    "chord_queue_name",
    "control_consumer_tag",
    "control_exchange_name",
    "dead_letter_exchange_name",
    "dead_letter_queue_name",
    "delay_bit_header",
    "delay_deliver_exchange_name",
    "delay_exchange_name",
    "delay_queue_name",
    "deliveries_before",
    "events_exchange_name",
    "is_caller_queue",
    "is_direct_reply_to",
    "revocations_consumer_tag",
    "revocations_queue_name",
    "worker_consumer_tag",
]

# -- headers of task messages --------------------------------------------------------------

HEADER_PROTOCOL = "amqpq-protocol"
HEADER_TASK = "amqpq-task"
# Set on dead letters amqpq publishes itself (bad input, exhausted retries).
HEADER_REASON = "amqpq-dead-letter-reason"
HEADER_ERROR_TYPE = "amqpq-error-type"
HEADER_ERROR_MESSAGE = "amqpq-error-message"
HEADER_ORIGINAL_QUEUE = "amqpq-original-queue"
HEADER_ORIGINAL_EXCHANGE = "amqpq-original-exchange"
HEADER_ORIGINAL_ROUTING_KEY = "amqpq-original-routing-key"
HEADER_DEAD_AT = "amqpq-dead-at"
# How many times a message of a classic queue came back unacked (amqpq/worker/redelivery.py).
HEADER_REDELIVERIES = "amqpq-redeliveries"

# A member result in a chord's queue (docs/workflows.md): its index in the header; and the
# marker a joiner publishes behind the results it must read (any joiner drops markers).
HEADER_CHORD_INDEX = "amqpq-chord-index"
HEADER_CHORD_MARKER = "amqpq-chord-marker"

# Celery's message protocol 2 (docs/celery.md): a message whose headers name the task and
# its id, and that carries no ``amqpq-protocol`` header, came from a Celery producer.
CELERY_HEADER_TASK = "task"
CELERY_HEADER_ID = "id"
CELERY_HEADER_RETRIES = "retries"
CELERY_HEADER_ETA = "eta"

# RabbitMQ's count of a quorum queue message's earlier deliveries.
HEADER_DELIVERY_COUNT = "x-delivery-count"


def deliveries_before(headers: Mapping[str, Any], redelivered: bool) -> int:
    """How many times the broker delivered a message before: ``x-delivery-count`` on
    quorum queues; elsewhere only the redelivered flag is known (at least once)."""
    value = headers.get(HEADER_DELIVERY_COUNT)
    return value if isinstance(value, int) else (1 if redelivered else 0)


# Headers RabbitMQ writes when it dead-letters; a republished message must not
# carry them, or the broker's expired-only cycle detection could drop it.
BROKER_DEAD_LETTER_HEADERS = (
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
    HEADER_DELIVERY_COUNT,
)

# The scheduler's token messages on its leader queue (amqpq/beat/main.py).
BEAT_HEADER_SCHEDULE = "amqpq-beat-schedule"
BEAT_HEADER_TICK = "amqpq-beat-tick"

# -- amqpq's own tasks (amqpq.builtin_tasks), routed as the task they call ------------------

MAP_TASK = "amqpq.map"
STARMAP_TASK = "amqpq.starmap"

# -- queue types -----------------------------------------------------------------------------

# Every queue amqpq declares names its type: a vhost may default to quorum (RabbitMQ 4.x
# deployments, Amazon MQ, ``add_vhost --default-queue-type``), and a queue declared
# without a type there becomes quorum, which exclusive and auto-delete queues cannot be.
QUEUE_TYPE_ARGUMENT = "x-queue-type"
# A durable result queue a producer names and declares itself (when it does not exist).
RESULT_QUEUE_ARGUMENTS: dict[str, Any] = {QUEUE_TYPE_ARGUMENT: "classic"}
# The exclusive, auto-delete queues of live consumers (control commands, events).
TRANSIENT_QUEUE_ARGUMENTS: dict[str, Any] = {QUEUE_TYPE_ARGUMENT: "classic"}

# -- direct reply-to -----------------------------------------------------------------------

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
# What RabbitMQ turns ``amq.rabbitmq.reply-to`` into on the way to a worker.
DIRECT_REPLY_TO_PREFIX = DIRECT_REPLY_TO + "."


def is_direct_reply_to(reply_to: str) -> bool:
    """True for the pseudo-queue and for the per-channel addresses the broker makes of it."""
    return reply_to.startswith(DIRECT_REPLY_TO)


# A producer that consumes direct reply-to also holds an exclusive queue of this prefix on
# the same connection and names it in the tasks it sends (docs/protocol.md, "Callers"):
# the queue lives exactly as long as the caller's connection, so a worker can ask the
# broker whether anyone is left to read a reply before sending it.
HEADER_CALLER = "amqpq-caller"
CALLER_QUEUE_PREFIX = "amqpq.caller."


def caller_queue_name() -> str:
    """A new caller queue name (one per producer connection: never reused, so a
    reconnecting producer never meets the queue its old connection still holds)."""
    return f"{CALLER_QUEUE_PREFIX}{uuid.uuid4().hex}"


def is_caller_queue(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and name.startswith(CALLER_QUEUE_PREFIX) and len(name) <= 255


# -- consumer tags (visible in the management UI and ``amqpq status``) ---------------------


def worker_consumer_tag(hostname: str, pid: int, queue: str) -> str:
    return f"amqpq-worker.{hostname}.{pid}.{queue}"


def control_consumer_tag(hostname: str, pid: int) -> str:
    return f"amqpq-control.{hostname}.{pid}"


def revocations_consumer_tag(worker: str) -> str:
    return f"amqpq-revocations.{worker.replace(':', '.')}"


def beat_consumer_tag(hostname: str, pid: int) -> str:
    return f"amqpq-beat.{hostname}.{pid}"


# -- infrastructure names (docs/architecture.md, "Objects amqpq adds to the broker") -------

BEAT_LEADER_QUEUE_SUFFIX = "beat.leader"


def control_exchange_name(prefix: str = "amqpq") -> str:
    """Fanout exchange of worker control commands (``amqpq inspect``, ``amqpq revoke``)."""
    return f"{prefix}.control"


def events_exchange_name(prefix: str = "amqpq") -> str:
    """Topic exchange of task and worker events (``task.succeeded.<task>``, ``worker.online``)."""
    return f"{prefix}.events"


def events_stream_name(prefix: str = "amqpq") -> str:
    """Stream queue keeping task and worker events (workers' batches, bound to the exchange
    of the same name for senders' events): what ``amqpq events`` and the dashboard read."""
    return f"{prefix}.events"


def revocations_queue_name(prefix: str = "amqpq") -> str:
    """Stream of revoked task ids that every worker reads from the start."""
    return f"{prefix}.revoked"


def chord_queue_name(prefix: str, chord_id: str) -> str:
    """The queue a chord's members publish their results to and its last member joins
    (docs/workflows.md, "The join of a chord"); it expires by itself (``x-expires``)."""
    return f"{prefix}.chord.{chord_id}"


def dead_letter_exchange_name(prefix: str = "amqpq") -> str:
    return f"{prefix}.dlx"


def dead_letter_queue_name(queue: str) -> str:
    """The dead-letter queue of a work queue (bound to the DLX with the queue's name as key)."""
    return f"{queue}.dlq"


def beat_leader_queue_name(prefix: str = "amqpq") -> str:
    """The queue whose single active consumer is the one ``amqpq beat`` that sends (beat.py)."""
    return f"{prefix}.{BEAT_LEADER_QUEUE_SUFFIX}"


# -- the delay protocol (docs/architecture.md, "Delays without plugins") -------------------
# Written by the sender (amqpq.delay) and bound by the declarer (amqpq.topology.infra).

# Levels 0..29: the longest delay one journey covers is 2**30 - 1 ms (about 12.4 days);
# longer delays are re-delayed by the worker.
DELAY_LEVELS = 30
MAX_DELAY_MS = (1 << DELAY_LEVELS) - 1
# Every steering header of a delay starts with this (a finished delay drops them all).
# No "x-" prefix: headers exchanges ignore x- binding arguments.
DELAY_HEADER_PREFIX = "amqpq-delay-"
# Where a message goes at the deliver exchange: re-routed through an exchange, or to one queue.
HEADER_DELAY_EXCHANGE = DELAY_HEADER_PREFIX + "exchange"
HEADER_DELAY_QUEUE = DELAY_HEADER_PREFIX + "queue"
_DELAY_BIT_HEADER = DELAY_HEADER_PREFIX + "bit-"


def delay_bit_header(level: int) -> str:
    """The header that carries bit ``level`` of a delay: "1" waits 2**level ms, "0" skips."""
    return f"{_DELAY_BIT_HEADER}{level}"


def delay_exchange_name(prefix: str, level: int) -> str:
    """The headers exchange of one delay level (0 <= level < DELAY_LEVELS)."""
    if not 0 <= level < DELAY_LEVELS:
        raise ValueError(f"delay level must be in 0..{DELAY_LEVELS - 1}, got {level}")
    return f"{prefix}.delay.{level}"


def delay_queue_name(prefix: str, level: int) -> str:
    """The queue where messages wait 2**level ms; it has the same name as its exchange."""
    return delay_exchange_name(prefix, level)


def delay_deliver_exchange_name(prefix: str = "amqpq") -> str:
    """Where a delayed message leaves the delay levels, routed by its delay target header."""
    return f"{prefix}.delay.deliver"
