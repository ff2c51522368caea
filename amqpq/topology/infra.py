"""The objects amqpq adds to the broker next to the file's own (docs/architecture.md).

``effective_topology`` returns the file's topology plus the dead-letter exchange
and queues, the binary delay levels and (when the file has schedules) the beat
leader queue, every added object flagged
``managed_by_amqpq``. It is what ``apply`` declares, ``plan`` compares,
``export`` writes and ``graph --all`` draws. The names of these objects (and the
delay protocol's headers, which :mod:`amqpq.delay` writes and the bindings here
match) are protocol facts defined in :mod:`amqpq.wire` and re-exported here.
"""

from __future__ import annotations

from typing import Any

from amqpq.errors import TopologyError
from amqpq.topology.checks import Problem
from amqpq.topology.models import (
    Exchange,
    ExchangeBinding,
    Infrastructure,
    Queue,
    QueueBinding,
    Topology,
)
from amqpq.wire import (
    BEAT_LEADER_QUEUE_SUFFIX,
    DELAY_LEVELS,
    HEADER_DELAY_EXCHANGE,
    HEADER_DELAY_QUEUE,
    beat_leader_queue_name,
    control_exchange_name,
    dead_letter_exchange_name,
    dead_letter_queue_name,
    delay_bit_header,
    delay_deliver_exchange_name,
    delay_exchange_name,
    delay_queue_name,
    events_exchange_name,
    events_stream_name,
    revocations_queue_name,
)

__all__ = [
    "BEAT_LEADER_QUEUE_SUFFIX",
    "DEAD_LETTER_QUEUE_DELIVERY_LIMIT",
    "DELAY_LEVELS",
    "beat_leader_queue",
    "beat_leader_queue_name",
    "control_exchange_name",
    "dead_letter_exchange_name",
    "dead_letter_queue_name",
    "delay_bit_header",
    "delay_deliver_exchange_name",
    "delay_exchange_name",
    "delay_queue_name",
    "effective_topology",
    "events_exchange_name",
    "events_stream_name",
    "infrastructure_problems",
    "operations_objects",
    "revocations_queue_name",
    "work_queues",
]

# x-delivery-limit of quorum dead-letter queues: the largest value a signed 32-bit table
# field holds, so a dead letter is never dropped for being peeked at (see _dead_letter_objects).
DEAD_LETTER_QUEUE_DELIVERY_LIMIT = 2**31 - 1


# How long revocations stay on the broker (the stream's x-max-age; docs/operations.md).
REVOCATION_RETENTION = "24h"
# Small segments: a stream only drops whole segments, so age-based retention needs them.
REVOCATION_SEGMENT_BYTES = 1_000_000
REVOCATION_MAX_BYTES = 100_000_000
# The events stream rolls segments often enough for its age limit to bite within hours.
EVENTS_SEGMENT_BYTES = 16_000_000


def operations_objects(infra: Infrastructure | None = None) -> tuple[list[Exchange], list[Queue]]:
    """The control and events exchanges, the revocations stream and the events stream."""
    infra = infra or Infrastructure()
    prefix = infra.prefix
    exchanges = [
        Exchange(name=control_exchange_name(prefix), type="fanout", managed_by_amqpq=True),
        Exchange(name=events_exchange_name(prefix), type="topic", managed_by_amqpq=True),
    ]
    queues = [
        Queue(
            name=revocations_queue_name(prefix),
            type="stream",
            max_age=REVOCATION_RETENTION,
            arguments={
                "x-stream-max-segment-size-bytes": REVOCATION_SEGMENT_BYTES,
                "x-max-length-bytes": REVOCATION_MAX_BYTES,
            },
            managed_by_amqpq=True,
        ),
        Queue(
            name=events_stream_name(prefix),
            type="stream",
            max_age=infra.events_max_age,
            arguments={
                "x-stream-max-segment-size-bytes": EVENTS_SEGMENT_BYTES,
                "x-max-length-bytes": infra.events_max_bytes,
            },
            # Senders' task.sent events (one message each) join the workers' batches.
            bindings=(QueueBinding(exchange=events_exchange_name(prefix), routing_key="#"),),
            managed_by_amqpq=True,
        ),
    ]
    return exchanges, queues


def beat_leader_queue(prefix: str = "amqpq") -> Queue:
    """Quorum (the leadership token survives a node loss), single active consumer."""
    return Queue(
        name=beat_leader_queue_name(prefix),
        type="quorum",
        single_active_consumer=True,
        managed_by_amqpq=True,
    )


def work_queues(topology: Topology) -> list[Queue]:
    """The file's queues that tasks are consumed from and that can dead-letter.

    Streams cannot dead-letter or be retried into; exclusive queues belong to one
    connection and vanish with it.
    """
    return [
        q
        for q in topology.queues
        if not q.managed_by_amqpq and q.type in ("classic", "quorum") and not q.exclusive
    ]


def _sets_own_dead_lettering(queue: Queue) -> bool:
    return "x-dead-letter-exchange" in queue.declare_arguments


def _work_queue_arguments(queue: Queue, infra: Infrastructure) -> dict[str, Any]:
    """The work queue's ``arguments`` with amqpq's dead-lettering added where the file is silent."""
    arguments = dict(queue.arguments)
    if not queue.amqpq_arguments:  # declared as another system (Celery) declares it
        return arguments
    declared = queue.declare_arguments  # what the file asks for, typed fields included
    own_dlx = _sets_own_dead_lettering(queue)
    if infra.dead_letters and not own_dlx:
        arguments["x-dead-letter-exchange"] = dead_letter_exchange_name(infra.prefix)
        arguments["x-dead-letter-routing-key"] = queue.name
    if queue.type != "quorum":
        return arguments
    if infra.delivery_limit is not None and "x-delivery-limit" not in declared:
        # Without a limit a message that kills its worker is redelivered forever.
        arguments["x-delivery-limit"] = infra.delivery_limit
    has_dlx = own_dlx or infra.dead_letters
    overflow = declared.get("x-overflow", "reject-publish")
    # at-least-once dead-lettering requires reject-publish overflow; a file that chose
    # another overflow keeps RabbitMQ's default at-most-once strategy.
    if has_dlx and overflow == "reject-publish" and "x-dead-letter-strategy" not in declared:
        if "x-overflow" not in declared:
            arguments["x-overflow"] = "reject-publish"
        arguments["x-dead-letter-strategy"] = "at-least-once"
    return arguments


def _dead_letter_objects(topology: Topology, prefix: str) -> tuple[Exchange, list[Queue]]:
    """The DLX and one DLQ per work queue that uses it (not those with their own DLX)."""
    dlx = Exchange(name=dead_letter_exchange_name(prefix), type="direct", managed_by_amqpq=True)
    queues: list[Queue] = []
    for queue in work_queues(topology):
        if _sets_own_dead_lettering(queue):
            continue
        quorum = queue.type == "quorum"
        queues.append(
            Queue(
                name=dead_letter_queue_name(queue.name),
                # A quorum work queue's dead letters deserve the same replication.
                type="quorum" if quorum else "classic",
                # RabbitMQ 4.x gives every quorum queue a delivery limit of 20 and a DLQ has
                # no DLX: peeking at it (`dlq show` returns what it read) could drop dead
                # letters there. -1 ("no limit" on 4.x) drops a message at its first return
                # on 3.x, so the limit is set out of reach instead.
                delivery_limit=DEAD_LETTER_QUEUE_DELIVERY_LIMIT if quorum else None,
                bindings=(QueueBinding(exchange=dlx.name, routing_key=queue.name),),
                managed_by_amqpq=True,
            )
        )
    return dlx, queues


def _delay_queue_arguments(queue_type: str, ttl: int, dead_letter_exchange: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "x-message-ttl": ttl,
        "x-dead-letter-exchange": dead_letter_exchange,
    }
    if queue_type == "quorum":
        # A quorum queue dead-letters at most once unless told otherwise: a hop between
        # levels could then be lost with a node. At-least-once needs reject-publish.
        arguments["x-overflow"] = "reject-publish"
        arguments["x-dead-letter-strategy"] = "at-least-once"
    return arguments


def _delay_objects(infra: Infrastructure) -> tuple[list[Exchange], list[Queue]]:
    """The 30 delay levels and the exit exchange, without the bindings to user objects."""
    prefix = infra.prefix
    deliver = delay_deliver_exchange_name(prefix)

    def lower(level: int) -> str:
        return delay_exchange_name(prefix, level - 1) if level else deliver

    # Exchange-to-exchange bindings are written on their destination: the next lower
    # level (or deliver) receives from level L when bit L is "0".
    receives: dict[str, list[ExchangeBinding]] = {}
    for level in range(DELAY_LEVELS):
        receives.setdefault(lower(level), []).append(
            ExchangeBinding(
                exchange=delay_exchange_name(prefix, level),
                arguments={"x-match": "all", delay_bit_header(level): "0"},
            )
        )
    exchanges = [
        Exchange(
            name=name,
            type="headers",
            bindings=tuple(receives.get(name, ())),
            managed_by_amqpq=True,
        )
        for name in [*(delay_exchange_name(prefix, lv) for lv in range(DELAY_LEVELS)), deliver]
    ]
    queues = [
        Queue(
            name=delay_queue_name(prefix, level),
            # Quorum by default: a classic queue lives on one node, and while that node is
            # down every countdown routed through its level is returned (NO_ROUTE).
            type=infra.delay_queue_type,
            # One TTL per queue keeps expiry FIFO: a short delay never waits behind a
            # long one. Dead-lettering keeps the routing key and headers.
            arguments=_delay_queue_arguments(infra.delay_queue_type, 2**level, lower(level)),
            bindings=(
                QueueBinding(
                    exchange=delay_exchange_name(prefix, level),
                    arguments={"x-match": "all", delay_bit_header(level): "1"},
                ),
            ),
            managed_by_amqpq=True,
        )
        for level in range(DELAY_LEVELS)
    ]
    return exchanges, queues


def effective_topology(topology: Topology) -> Topology:
    """The file's topology plus the infrastructure its ``infrastructure:`` section asks for.

    Raises :class:`TopologyError` when a file object has the name of an object
    amqpq needs to add. Applying it twice gives the same result.
    """
    if any(x.managed_by_amqpq for x in topology.exchanges) or any(
        q.managed_by_amqpq for q in topology.queues
    ):
        return topology  # already expanded
    infra = topology.infrastructure
    prefix = infra.prefix
    added_exchanges: list[Exchange] = []
    added_queues: list[Queue] = []
    if infra.dead_letters:
        dlx, dlqs = _dead_letter_objects(topology, prefix)
        added_exchanges.append(dlx)
        added_queues.extend(dlqs)
    if infra.delay:
        delay_exchanges, delay_queues = _delay_objects(infra)
        added_exchanges.extend(delay_exchanges)
        added_queues.extend(delay_queues)
    if infra.operations:
        ops_exchanges, ops_queues = operations_objects(infra)
        added_exchanges.extend(ops_exchanges)
        added_queues.extend(ops_queues)
    if topology.schedules:
        added_queues.append(beat_leader_queue(prefix))
    clashes = _name_clashes(topology, added_exchanges, added_queues)
    if clashes:
        lines = [problem.describe() for problem in clashes]
        raise TopologyError(lines[0], lines)

    deliver = delay_deliver_exchange_name(prefix)
    work = {q.name for q in work_queues(topology)}
    exchanges = []
    for exchange in topology.exchanges:
        if infra.delay:
            # countdown/eta: a delayed message re-enters the exchange its route names.
            exchange = exchange.model_copy(
                update={
                    "bindings": (
                        *exchange.bindings,
                        ExchangeBinding(
                            exchange=deliver,
                            arguments={"x-match": "all", HEADER_DELAY_EXCHANGE: exchange.name},
                        ),
                    )
                }
            )
        exchanges.append(exchange)
    queues = []
    for queue in topology.queues:
        if queue.name in work:
            update: dict[str, Any] = {"arguments": _work_queue_arguments(queue, infra)}
            if infra.delay:
                # retries: back to the queue the task was consumed from, never re-fanned-out.
                update["bindings"] = (
                    *queue.bindings,
                    QueueBinding(
                        exchange=deliver,
                        arguments={"x-match": "all", HEADER_DELAY_QUEUE: queue.name},
                    ),
                )
            queue = queue.model_copy(update=update)
        queues.append(queue)
    return topology.model_copy(
        update={
            "exchanges": (*exchanges, *added_exchanges),
            "queues": (*queues, *added_queues),
        }
    )


def infrastructure_problems(topology: Topology) -> list[Problem]:
    """File objects whose names collide with what amqpq adds (the loader reports these)."""
    infra = topology.infrastructure
    exchanges: list[Exchange] = []
    queues: list[Queue] = []
    if infra.dead_letters:
        dlx, dlqs = _dead_letter_objects(topology, infra.prefix)
        exchanges.append(dlx)
        queues.extend(dlqs)
    if infra.delay:
        delay_exchanges, delay_queues = _delay_objects(infra)
        exchanges.extend(delay_exchanges)
        queues.extend(delay_queues)
    if infra.operations:
        ops_exchanges, ops_queues = operations_objects(infra)
        exchanges.extend(ops_exchanges)
        queues.extend(ops_queues)
    if topology.schedules:
        queues.append(beat_leader_queue(infra.prefix))
    return _name_clashes(topology, exchanges, queues)


def _name_clashes(
    topology: Topology, exchanges: list[Exchange], queues: list[Queue]
) -> list[Problem]:
    problems: list[Problem] = []
    added_exchanges = {x.name for x in exchanges}
    added_queues = {q.name for q in queues}
    for i, exchange in enumerate(topology.exchanges):
        if exchange.name in added_exchanges:
            problems.append(
                Problem(
                    ("exchanges", i, "name"),
                    f"{exchange.name!r} is an exchange amqpq adds itself; rename it "
                    "or change infrastructure.prefix",
                )
            )
    for i, queue in enumerate(topology.queues):
        if queue.name in added_queues:
            problems.append(
                Problem(
                    ("queues", i, "name"),
                    f"{queue.name!r} is a queue amqpq adds itself; rename it, give its work "
                    "queue its own dead-letter exchange, or change infrastructure.prefix",
                )
            )
    return problems
