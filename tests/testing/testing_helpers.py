"""Publish scenarios shared by the in-memory tests and their twins on RabbitMQ."""

from __future__ import annotations

from typing import Any

from amqpq.app import App
from amqpq.registry import TaskContext
from amqpq.settings import Settings
from amqpq.topology.models import Topology

# (scenario id, exchange, routing key, headers) -> the queues RabbitMQ delivers to (empty: unroutable)
SCENARIOS: list[tuple[str, str, str, dict[str, Any], set[str]]] = [
    ("direct-default", "tasks", "default", {}, {"default"}),
    ("direct-high", "tasks", "high", {}, {"high_priority"}),
    ("direct-unbound-key", "tasks", "nobody", {}, set()),
    ("topic-one-word", "events", "user.signup", {}, {"signups", "audit_a"}),
    ("topic-hash-via-e2e", "events", "user.signup.extra", {}, {"audit_a"}),
    ("topic-no-match", "events", "order.created", {}, set()),
    ("topic-empty-key", "events", "", {}, set()),
    ("fanout-ignores-key", "broadcast", "whatever", {}, {"audit_a", "audit_b"}),
    ("headers-all", "reports", "", {"format": "pdf"}, {"pdf"}),
    ("headers-any", "reports", "", {"format": "csv"}, {"any_report"}),
    ("headers-any-other-key", "reports", "", {"urgent": "yes"}, {"any_report"}),
    ("headers-both", "reports", "", {"format": "pdf", "urgent": "yes"}, {"pdf", "any_report"}),
    ("headers-typed-value", "reports", "", {"urgent": 1}, set()),
    ("headers-no-match", "reports", "", {"format": "doc"}, set()),
    ("alternate-not-needed", "ingress", "orders.new.eu", {}, {"ingress_orders"}),
    ("alternate-exchange", "ingress", "refunds.new", {}, {"lost_and_found"}),
    ("default-exchange", "", "audit_b", {}, {"audit_b"}),
    ("default-exchange-unknown-queue", "", "no-such-queue", {}, set()),
]

USER_QUEUES = [
    "default",
    "high_priority",
    "signups",
    "audit_a",
    "audit_b",
    "pdf",
    "any_report",
    "ingress_orders",
    "lost_and_found",
]

# Task sends: (task, options) -> queues
TASK_SENDS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("tests.add", {}, {"default"}),
    ("tests.send_email", {}, {"high_priority"}),
    ("tests.on_signup", {}, {"signups", "audit_a"}),
    ("tests.audit", {}, {"audit_a", "audit_b"}),
    ("reports.monthly", {}, {"pdf"}),
    ("reports.monthly", {"headers": {"urgent": "yes"}}, {"pdf", "any_report"}),
    ("tests.add", {"exchange": "events", "routing_key": "user.login"}, {"signups", "audit_a"}),
    ("tests.add", {"routing_key": "high"}, {"high_priority"}),
]


def args_for(task: str) -> list[Any]:
    args: dict[str, list[Any]] = {
        "tests.add": [1, 2],
        "tests.send_email": ["ada@example.com"],
        "tests.on_signup": ["ada"],
        "tests.audit": ["login"],
        "reports.monthly": [7],
    }
    return args[task]


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
