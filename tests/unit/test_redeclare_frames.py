"""The one-write redeclare sends the bytes aiormq's own methods would, in the same order."""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import pamqp.frame

from amqpq.topology.infra import effective_topology
from amqpq.topology.models import Topology
from amqpq.transport.declare import _bindings_of, _redeclare_frames

TOPOLOGY = Topology.model_validate(
    {
        "exchanges": [
            {"name": "jobs", "type": "direct"},
            {
                "name": "fan",
                "type": "fanout",
                "bindings": [{"exchange": "jobs", "routing_key": "f"}],
            },
        ],
        "queues": [
            {"name": "work", "bindings": [{"exchange": "jobs", "routing_key": "work"}]},
            {"name": "slow", "type": "classic", "bindings": [{"exchange": "fan"}]},
        ],
        "routes": {"*": {"exchange": "jobs", "routing_key": "work"}},
    }
)


class _Recorder:
    """Stands in for aiormq.Channel: records the frame each of its methods builds."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    async def rpc(self, frame: Any, timeout: Any = None) -> None:
        self.frames.append(frame)


async def _one_call_each(topology: Topology) -> list[Any]:
    """What the per-method calls (the code before the one write) sent."""
    recorder = _Recorder()
    channel: Any = recorder
    exchanges = list(topology.exchanges)
    queues = [q for q in topology.queues if not q.exclusive]
    for passive in (True, False):
        for x in exchanges:
            await aiormq.Channel.exchange_declare(
                channel,
                x.name,
                exchange_type=x.type,
                passive=passive,
                durable=x.durable,
                auto_delete=x.auto_delete,
                internal=x.internal,
                nowait=True,
                arguments=x.declare_arguments or None,
            )
        for q in queues:
            await aiormq.Channel.queue_declare(
                channel,
                q.name,
                passive=passive,
                durable=q.durable,
                exclusive=q.exclusive,
                auto_delete=q.auto_delete,
                nowait=True,
                arguments=q.declare_arguments or None,
            )
    for b in _bindings_of(topology):
        if b.destination_type == "exchange":
            await aiormq.Channel.exchange_bind(
                channel, b.destination, b.source, b.routing_key, nowait=True, arguments=b.arguments
            )
        else:
            await aiormq.Channel.queue_bind(
                channel, b.destination, b.source, b.routing_key, nowait=True, arguments=b.arguments
            )
    return recorder.frames


def test_the_frames_are_the_ones_aiormqs_methods_send() -> None:
    effective = effective_topology(TOPOLOGY)
    queues = [q for q in effective.queues if not q.exclusive]
    ours = _redeclare_frames(list(effective.exchanges), queues, _bindings_of(effective))
    theirs = asyncio.run(_one_call_each(effective))
    assert len(ours) == len(theirs) > 100  # amqpq's infrastructure included
    assert [pamqp.frame.marshal(f, 1) for f in ours] == [pamqp.frame.marshal(f, 1) for f in theirs]
