"""Topology as code: the ``amqpq.yaml`` schema, its loader and checks, routing, plan, export."""

from __future__ import annotations

from amqpq.topology.infra import (
    DELAY_LEVELS,
    dead_letter_exchange_name,
    dead_letter_queue_name,
    delay_exchange_name,
    effective_topology,
)
from amqpq.topology.loader import load_topology, load_topology_text
from amqpq.topology.models import Exchange, Queue, Route, Schedule, Topology
from amqpq.topology.routing import Router, route_targets

__all__ = [
    "DELAY_LEVELS",
    "Exchange",
    "Queue",
    "Route",
    "Router",
    "Schedule",
    "Topology",
    "dead_letter_exchange_name",
    "dead_letter_queue_name",
    "delay_exchange_name",
    "effective_topology",
    "load_topology",
    "load_topology_text",
    "route_targets",
]
