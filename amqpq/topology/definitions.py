"""Export a topology as RabbitMQ definitions JSON.

Without a vhost the objects carry no ``vhost`` key: the management UI's
"Import definitions" and ``POST /api/definitions/{vhost}`` load them into the
vhost they are given. With a vhost every object names it and the vhost itself is
listed, which is the form ``load_definitions`` reads when a node boots.

Exclusive queues are left out: they belong to a connection, and definitions
cannot create them.
"""

from __future__ import annotations

from typing import Any

from amqpq.topology.models import Topology

__all__ = ["topology_definitions"]


def topology_definitions(topology: Topology, vhost: str | None = None) -> dict[str, Any]:
    """Definitions of an (effective) topology: exchanges, queues, bindings incl. e2e."""
    where: dict[str, Any] = {} if vhost is None else {"vhost": vhost}
    exclusive = {q.name for q in topology.queues if q.exclusive}
    definitions: dict[str, Any] = {}
    if vhost is not None:
        definitions["vhosts"] = [{"name": vhost}]
    definitions["exchanges"] = [
        {
            "name": x.name,
            **where,
            "type": x.type,
            "durable": x.durable,
            "auto_delete": x.auto_delete,
            "internal": x.internal,
            "arguments": x.declare_arguments,
        }
        for x in topology.exchanges
    ]
    definitions["queues"] = [
        {
            "name": q.name,
            **where,
            "durable": q.durable,
            "auto_delete": q.auto_delete,
            # Definitions state the queue type as an argument (classic when absent).
            "arguments": q.declare_arguments,
        }
        for q in topology.queues
        if not q.exclusive
    ]
    definitions["bindings"] = [
        {
            "source": b.source,
            **where,
            "destination": b.destination,
            "destination_type": b.destination_type,
            "routing_key": b.routing_key,
            "arguments": b.arguments,
        }
        for b in topology.bindings()
        if not (b.destination_type == "queue" and b.destination in exclusive)
    ]
    return definitions
