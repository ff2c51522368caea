"""Publish scenarios shared by the in-memory tests and their twins on RabbitMQ."""

from __future__ import annotations

from typing import Any

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
