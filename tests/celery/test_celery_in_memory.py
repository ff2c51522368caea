"""A ``protocol: celery`` route under ``amqpq.testing``: the same Celery messages, run by
the worker's own handler in memory (no broker), so users can unit-test a migration."""

from __future__ import annotations

import json

from amqpq.app import App
from amqpq.registry import TaskContext
from amqpq.testing import TestBroker
from amqpq.topology import Topology

TOPOLOGY = Topology.model_validate(
    {
        "exchanges": [{"name": "celery", "type": "direct"}],
        "queues": [
            {"name": "legacy", "bindings": [{"exchange": "celery", "routing_key": "legacy"}]}
        ],
        "routes": {"*": {"exchange": "celery", "routing_key": "legacy", "protocol": "celery"}},
    }
)


def make_app() -> App:
    app = App("memory", topology=TOPOLOGY)

    @app.task(name="legacy.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="legacy.flaky", bind=True, max_retries=3)
    def flaky(self: TaskContext) -> int:
        if self.request.retries < 2:
            self.retry(countdown=5)
        return self.request.retries

    return app


def test_a_celery_route_sends_celerys_format_and_the_worker_handler_runs_it() -> None:
    app = make_app()
    with TestBroker(app) as broker:
        result = app.send_task("legacy.mul", args=[6], kwargs={"y": 7})

        [message] = broker.queue("legacy").messages
        assert message.headers["task"] == "legacy.mul"
        assert message.headers["id"] == result.id
        assert json.loads(message.body)[:2] == [[6], {"y": 7}]
        broker.run_all()

    assert result.get(timeout=1) == 42


def test_a_celery_message_retried_in_memory_stays_a_celery_message() -> None:
    app = make_app()
    with TestBroker(app) as broker:
        result = app.send_task("legacy.flaky")

        broker.run_all(fast_forward=True)

    assert result.get(timeout=1) == 2
