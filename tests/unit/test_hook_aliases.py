"""Celery's signal names as hook decorators: the same hooks under the names users know."""

from __future__ import annotations

from typing import Any

from amqpq.app import App
from amqpq.testing import TestBroker
from amqpq.topology.loader import DEFAULT_TOPOLOGY, topology_from_data


def test_celerys_names_register_the_same_hooks() -> None:
    app = App("aliases", topology=topology_from_data(DEFAULT_TOPOLOGY))

    def on_start(**_: Any) -> None: ...

    def on_ready(**_: Any) -> None: ...

    def on_stop(**_: Any) -> None: ...

    assert app.on_worker_init(on_start) is on_start
    app.on_worker_ready(on_ready)
    app.on_worker_shutdown(on_stop)

    assert app.hooks_for("worker_start") == [on_start, on_ready]
    assert app.hooks_for("worker_stop") == [on_stop]


def test_celerys_publish_signal_names_run_around_a_send() -> None:
    app = App("aliases", topology=topology_from_data(DEFAULT_TOPOLOGY))
    seen: list[str] = []

    @app.task(name="aliases.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.on_before_task_publish
    def before(envelope: Any, **_: Any) -> None:
        seen.append(f"before {envelope.task}")

    @app.on_after_task_publish
    def after(envelope: Any, **_: Any) -> None:
        seen.append(f"after {envelope.task}")

    with TestBroker(app):
        add.delay(1, 2)

    assert seen == ["before aliases.add", "after aliases.add"]
