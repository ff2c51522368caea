"""Declare a topology on the broker over AMQP (aio-pika), all or nothing where RabbitMQ allows.

:func:`declare_topology` first checks every object that already exists by
declaring it again: RabbitMQ answers an equivalent redeclare with OK and a
different one with PRECONDITION_FAILED, and either way nothing is created. Only
when no object conflicts does it declare, in the order the broker needs:
exchanges, exchange-to-exchange bindings, queues, queue bindings. So a file
that conflicts with the broker changes nothing, even without the management
API; only a concurrent change between the two passes can still fail half-way,
and it is then reported the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import ChannelFrame

from amqpq.errors import (
    BrokerError,
    BrokerUnreachableError,
    TopologyConflictError,
    TopologyError,
)
from amqpq.settings import BrokerAddress, Settings, connection_name
from amqpq.topology.infra import effective_topology
from amqpq.topology.models import Binding, Exchange, Queue, Topology
from amqpq.topology.plan import delay_queue_names, describe_binding, queue_type_remedy
from amqpq.transport.aio_mapping import connect_first, reply_text
from amqpq.transport.tls import ssl_context_for

__all__ = ["ApplyResult", "connect_for_topology", "declare_topology", "declare_topology_sync"]

T = TypeVar("T")


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply`` did: objects created and objects that were already there (unchanged)."""

    created: tuple[str, ...]
    unchanged: tuple[str, ...]
    bindings: int

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.unchanged)} unchanged, "
            f"{self.bindings} bindings declared"
        )


async def connect_for_topology(settings: Settings, role: str = "topology") -> AbstractConnection:
    """A plain (not robust) connection named ``amqpq <role> <host>:<pid>``, with failover."""

    async def open_address(address: BrokerAddress) -> AbstractConnection:
        return await aio_pika.connect(
            host=address.host,
            port=address.port,
            login=address.username,
            password=address.password,
            virtualhost=address.vhost,
            ssl=address.tls,
            ssl_context=ssl_context_for(settings) if address.tls else None,
            timeout=settings.connect_timeout,
            client_properties={"connection_name": connection_name(role)},
        )

    return (await connect_first(settings, open_address))[1]


class _Declarer:
    """One channel that is reopened after each channel error the broker sends."""

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self._channel: AbstractChannel | None = None

    async def channel(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self.connection.channel(publisher_confirms=False)
        return self._channel

    async def run(self, what: str, action: Callable[[AbstractChannel], Awaitable[T]]) -> T:
        """Run one declare; broker refusals become amqpq errors naming ``what``."""
        channel = await self.channel()
        try:
            return await action(channel)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            self._channel = None
            raise TopologyConflictError(f"{what}: {reply_text(exc)}") from exc
        except aiormq.exceptions.ChannelLockedResource as exc:
            self._channel = None
            raise TopologyConflictError(
                f"{what}: exclusive to another connection ({reply_text(exc)})"
            ) from exc
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            self._channel = None
            raise TopologyError(f"{what}: {reply_text(exc)}") from exc
        except aiormq.exceptions.ChannelAccessRefused as exc:
            self._channel = None
            raise BrokerError(f"{what}: the broker refused: {reply_text(exc)}") from exc
        except (aiormq.exceptions.ConnectionClosed, aiormq.exceptions.AMQPConnectionError) as exc:
            raise BrokerUnreachableError(
                f"{what}: the connection closed: {reply_text(exc)}"
            ) from exc

    async def exists(self, what: str, action: Callable[[AbstractChannel], Awaitable[Any]]) -> bool:
        """A passive declare: True if the object exists."""
        try:
            await self.run(what, action)
        except TopologyError as exc:
            if isinstance(exc, TopologyConflictError):
                raise
            return False
        return True


def _declare_exchange(exchange: Exchange, *, passive: bool = False) -> Callable[..., Any]:
    def action(channel: AbstractChannel) -> Awaitable[Any]:
        return channel.declare_exchange(
            exchange.name,
            exchange.type,
            durable=exchange.durable,
            auto_delete=exchange.auto_delete,
            internal=exchange.internal,
            passive=passive,
            arguments=exchange.declare_arguments or None,
        )

    return action


def _declare_queue(queue: Queue, *, passive: bool = False) -> Callable[..., Any]:
    def action(channel: AbstractChannel) -> Awaitable[Any]:
        return channel.declare_queue(
            queue.name,
            durable=queue.durable,
            exclusive=queue.exclusive,
            auto_delete=queue.auto_delete,
            passive=passive,
            arguments=queue.declare_arguments or None,
        )

    return action


def _bind(binding: Binding) -> Callable[[AbstractChannel], Awaitable[Any]]:
    async def action(channel: AbstractChannel) -> Any:
        arguments = binding.arguments or None
        if binding.destination_type == "exchange":
            destination = await channel.get_exchange(binding.destination, ensure=False)
            return await destination.bind(binding.source, binding.routing_key, arguments=arguments)
        queue = await channel.get_queue(binding.destination, ensure=False)
        return await queue.bind(binding.source, binding.routing_key, arguments=arguments)

    return action


async def _preflight(declarer: _Declarer, topology: Topology) -> tuple[set[str], list[str]]:
    """Which objects exist, and which of those RabbitMQ would refuse to redeclare."""
    existing: set[str] = set()
    conflicts: list[str] = []
    objects: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
        (f"exchange {x.name!r}", _declare_exchange(x, passive=True), _declare_exchange(x))
        for x in topology.exchanges
    ]
    objects += [
        (f"queue {q.name!r}", _declare_queue(q, passive=True), _declare_queue(q))
        for q in topology.queues
        if not q.exclusive
    ]
    for what, passive, active in objects:
        try:
            if not await declarer.exists(what, passive):
                continue
            existing.add(what)
            # The object exists, so this creates nothing: it only asks whether
            # RabbitMQ accepts the file's definition as equivalent.
            await declarer.run(what, active)
        except TopologyConflictError as exc:
            conflicts.append(_with_remedy(str(exc), topology))
    return existing, conflicts


def _with_remedy(conflict: str, topology: Topology) -> str:
    """A queue of another type on the broker, with what to do about it.

    RabbitMQ names the first argument it finds different, in an order of its own, so
    a queue of another type may be reported by an argument only one of the types has.
    A delay level conflicts only when its type changed: its arguments are amqpq's own.
    """
    queue = next((q for q in topology.queues if conflict.startswith(f"queue {q.name!r}:")), None)
    if queue is None:
        return conflict
    remedy = queue_type_remedy(topology, queue.name)
    if "'x-queue-type'" in conflict or queue.name in delay_queue_names(topology):
        return f"{conflict} ({remedy})"
    return conflict


async def _redeclare_existing(
    connection: AbstractConnection, topology: Topology, bindings: list[Binding]
) -> ApplyResult | None:
    """The common case, when everything already exists, in one round trip; None otherwise.

    One channel carries, without waiting for answers (``nowait``): a passive declare
    of every exchange and queue, then their full declares, then every binding, and
    last one synchronous method. RabbitMQ handles a channel's methods in order and
    closes the channel at the first one it refuses, ignoring the rest. So when the
    last method is answered, everything existed and was equivalent; when the channel
    closes, nothing was changed: a missing object stops it at its passive declare
    (before any full declare), and a conflicting one at its own full declare, after
    which no binding was sent. The caller then takes the careful path, which creates
    what is missing or reports every conflict.
    """
    exchanges = list(topology.exchanges)
    queues = [q for q in topology.queues if not q.exclusive]
    channel = await connection.channel(publisher_confirms=False)
    try:
        raw = await channel.get_underlay_channel()
        if not isinstance(raw, aiormq.Channel):
            return None  # not aiormq's channel: the careful path
        frames = _redeclare_frames(exchanges, queues, bindings)
        if _ONE_WRITE:
            # One buffer on aiormq's write queue: the methods and their order are the same
            # as one call each, without a call's task, lock and queue turn per method.
            await raw.write_queue.put(ChannelFrame.marshall(raw.number, frames))
        else:
            for frame in frames:
                await raw.rpc(frame)  # no-wait methods: returns once queued
        await raw.basic_qos(prefetch_count=0)  # answered only after everything above
    except (aiormq.exceptions.AMQPChannelError, aiormq.exceptions.ChannelInvalidStateError):
        return None
    except (aiormq.exceptions.ConnectionClosed, aiormq.exceptions.AMQPConnectionError) as exc:
        raise BrokerUnreachableError(
            f"declaring the topology: the connection closed: {reply_text(exc)}"
        ) from exc
    finally:
        if not channel.is_closed:
            with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
                await channel.close()
    unchanged = [f"exchange {x.name!r}" for x in exchanges] + [f"queue {q.name!r}" for q in queues]
    return ApplyResult((), tuple(unchanged), len(bindings))


_ONE_WRITE = callable(getattr(ChannelFrame, "marshall", None))
"""aiormq (7.x) takes frames marshalled in one buffer; older ones get a call per method."""

_RedeclareFrame = (
    aiormq.spec.Exchange.Declare
    | aiormq.spec.Queue.Declare
    | aiormq.spec.Exchange.Bind
    | aiormq.spec.Queue.Bind
)


def _redeclare_frames(
    exchanges: list[Exchange], queues: list[Queue], bindings: list[Binding]
) -> list[_RedeclareFrame]:
    """The no-wait methods of :func:`_redeclare_existing`, in order, as aiormq's
    ``exchange_declare``, ``queue_declare``, ``exchange_bind`` and ``queue_bind`` build
    them."""
    frames: list[_RedeclareFrame] = []
    for passive in (True, False):
        frames += [
            aiormq.spec.Exchange.Declare(
                exchange=x.name,
                exchange_type=x.type,
                passive=passive,
                durable=x.durable,
                auto_delete=x.auto_delete,
                internal=x.internal,
                nowait=True,
                arguments=x.declare_arguments or None,
            )
            for x in exchanges
        ]
        frames += [
            aiormq.spec.Queue.Declare(
                queue=q.name,
                passive=passive,
                durable=q.durable,
                exclusive=q.exclusive,
                auto_delete=q.auto_delete,
                nowait=True,
                arguments=q.declare_arguments or None,
            )
            for q in queues
        ]
    for b in bindings:
        if len(b.routing_key) > 255:  # what aiormq's methods refuse before sending
            raise ValueError("Routing key too long (max 255 bytes)")
        if b.destination_type == "exchange":
            frames.append(
                aiormq.spec.Exchange.Bind(
                    destination=b.destination,
                    source=b.source,
                    routing_key=b.routing_key,
                    nowait=True,
                    arguments=b.arguments,
                )
            )
        else:
            frames.append(
                aiormq.spec.Queue.Bind(
                    queue=b.destination,
                    exchange=b.source,
                    routing_key=b.routing_key,
                    nowait=True,
                    arguments=b.arguments,
                )
            )
    return frames


async def declare_topology(
    settings: Settings, topology: Topology, *, check_only: bool = False
) -> ApplyResult:
    """Declare the effective topology (file + amqpq's infrastructure); idempotent.

    Raises :class:`TopologyConflictError` listing every object the broker holds
    differently (nothing is declared then), :class:`BrokerUnreachableError` when no
    broker answers. ``check_only`` stops after the conflict check.
    """
    effective = effective_topology(topology)
    connection = await connect_for_topology(settings)
    try:
        if not check_only:
            # A worker (re)starting finds everything in place: a hundred or more
            # sequential round trips become one.
            done = await _redeclare_existing(connection, effective, _bindings_of(effective))
            if done is not None:
                return done
        declarer = _Declarer(connection)
        existing, conflicts = await _preflight(declarer, effective)
        if conflicts:
            more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise TopologyConflictError(
                f"{conflicts[0]}{more}; nothing was declared",
                [f"{line}; nothing was declared" for line in conflicts],
            )
        created: list[str] = []
        unchanged: list[str] = []
        if check_only:
            return ApplyResult((), tuple(sorted(existing)), 0)

        def note(what: str) -> None:
            (unchanged if what in existing else created).append(what)

        for exchange in effective.exchanges:
            what = f"exchange {exchange.name!r}"
            await declarer.run(what, _declare_exchange(exchange))
            note(what)
        bindings = _bindings_of(effective)
        for binding in (b for b in bindings if b.destination_type == "exchange"):
            await declarer.run(f"binding {describe_binding(binding)}", _bind(binding))
        for queue in effective.queues:
            if queue.exclusive:
                continue  # owned by the connection that consumes it; would vanish with ours
            what = f"queue {queue.name!r}"
            await declarer.run(what, _declare_queue(queue))
            note(what)
        for binding in (b for b in bindings if b.destination_type == "queue"):
            await declarer.run(f"binding {describe_binding(binding)}", _bind(binding))
        return ApplyResult(tuple(created), tuple(unchanged), len(bindings))
    finally:
        await connection.close()


def _bindings_of(topology: Topology) -> list[Binding]:
    """Every binding but those to exclusive queues (their owner declares them)."""
    return [
        b
        for b in topology.bindings()
        if not (b.destination_type == "queue" and _is_exclusive(topology, b.destination))
    ]


def _is_exclusive(topology: Topology, queue: str) -> bool:
    found = topology.queue(queue)
    return found is not None and found.exclusive


def declare_topology_sync(
    settings: Settings, topology: Topology, *, check_only: bool = False
) -> ApplyResult:
    """:func:`declare_topology` for synchronous code (not from inside a running event loop)."""
    return asyncio.run(declare_topology(settings, topology, check_only=check_only))
