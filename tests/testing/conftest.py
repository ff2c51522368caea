"""Fixtures for amqpq.testing: one topology with every exchange type, and an App of tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from amqpq.app import App
from amqpq.testing import TestBroker
from amqpq.topology.models import Topology
from tests.testing.testing_helpers import make_app

TOPOLOGY: dict[str, Any] = {
    "exchanges": [
        {"name": "tasks", "type": "direct"},
        {"name": "events", "type": "topic"},
        {"name": "broadcast", "type": "fanout"},
        {"name": "reports", "type": "headers"},
        {"name": "ingress", "type": "topic", "alternate_exchange": "unrouted"},
        {"name": "unrouted", "type": "fanout"},
        # exchange-to-exchange: everything about users also goes to the mirror
        {
            "name": "mirror",
            "type": "fanout",
            "bindings": [{"exchange": "events", "routing_key": "user.#"}],
        },
    ],
    "queues": [
        {
            "name": "default",
            "type": "quorum",
            "bindings": [{"exchange": "tasks", "routing_key": "default"}],
        },
        {"name": "high_priority", "bindings": [{"exchange": "tasks", "routing_key": "high"}]},
        {"name": "signups", "bindings": [{"exchange": "events", "routing_key": "user.*"}]},
        {"name": "audit_a", "bindings": [{"exchange": "broadcast"}, {"exchange": "mirror"}]},
        {"name": "audit_b", "bindings": [{"exchange": "broadcast"}]},
        {
            "name": "pdf",
            "bindings": [{"exchange": "reports", "arguments": {"x-match": "all", "format": "pdf"}}],
        },
        {
            "name": "any_report",
            "bindings": [
                {
                    "exchange": "reports",
                    "arguments": {"x-match": "any", "format": "csv", "urgent": "yes"},
                }
            ],
        },
        {
            "name": "ingress_orders",
            "bindings": [{"exchange": "ingress", "routing_key": "orders.#"}],
        },
        {"name": "lost_and_found", "bindings": [{"exchange": "unrouted"}]},
    ],
    "routes": {
        "tests.send_email": {"exchange": "tasks", "routing_key": "high"},
        "tests.on_signup": {"exchange": "events", "routing_key": "user.signup"},
        "tests.audit": {"exchange": "broadcast"},
        "reports.*": {"exchange": "reports", "headers": {"format": "pdf"}},
        "tests.nowhere": {"exchange": "tasks", "routing_key": "nobody-listens"},
        "*": {"exchange": "tasks", "routing_key": "default"},
    },
}


@pytest.fixture
def topology() -> Topology:
    return Topology.model_validate(TOPOLOGY)


@pytest.fixture
def app(topology: Topology) -> App:
    return make_app(topology)


@pytest.fixture
def broker(app: App) -> Iterator[TestBroker]:
    with TestBroker(app) as test_broker:
        yield test_broker


@pytest.fixture
def eager(app: App) -> Iterator[TestBroker]:
    with TestBroker(app, eager=True) as test_broker:
        yield test_broker
