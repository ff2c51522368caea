"""Fixtures for amqpq.testing: one topology with every exchange type, and an App of tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from amqpq.app import App
from amqpq.registry import TaskContext
from amqpq.settings import Settings
from amqpq.testing import TestBroker
from amqpq.topology.models import Topology

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


def make_app(topology: Topology, settings: Settings | None = None) -> App:
    """An App with the tasks the tests use; ``calls`` records what ran."""
    app = App(
        "tests",
        settings=settings or Settings(url="amqp://guest:guest@127.0.0.1:1/none"),
        topology=topology,
    )
    calls: list[Any] = []
    app.calls = calls  # type: ignore[attr-defined]

    @app.task(name="tests.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tests.send_email")
    def send_email(to: str) -> str:
        calls.append(("send_email", to))
        return f"sent to {to}"

    @app.task(name="tests.on_signup")
    def on_signup(user: str) -> None:
        calls.append(("on_signup", user))

    @app.task(name="tests.audit")
    def audit(event: str) -> None:
        calls.append(("audit", event))

    @app.task(name="reports.monthly")
    def monthly(month: int) -> str:
        return f"report {month}"

    @app.task(name="tests.flaky", bind=True, max_retries=3, retry_backoff=True, retry_jitter=False)
    def flaky(self: TaskContext, succeed_on: int) -> int:
        calls.append(("flaky", self.request.retries))
        if self.request.retries < succeed_on:
            raise self.retry(exc=ConnectionError("upstream down"))
        return self.request.retries

    @app.task(name="tests.boom")
    def boom() -> None:
        raise KeyError("missing")

    @app.task(name="tests.progress", bind=True)
    def progress(self: TaskContext, steps: int) -> int:
        for step in range(steps):
            self.update_state(meta={"step": step})
        return steps

    @app.task(name="tests.signup_flow")
    def signup_flow(user: str) -> str:
        # A task that sends tasks and waits for one (fine in eager mode only).
        audit.delay(f"signup {user}")
        return str(send_email.delay(user).get(timeout=5))

    @app.task(name="tests.aadd")
    async def aadd(x: int, y: int) -> int:
        return x + y

    @app.task(name="tests.nowhere")
    def nowhere() -> None:
        return None

    return app


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
