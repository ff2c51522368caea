"""amqpq tasks on a queue Celery declares itself (``adopted_topology.yaml``)."""

from __future__ import annotations

from pathlib import Path

from amqpq.app import App

app = App("adopted", topology=Path(__file__).with_name("adopted_topology.yaml"))


@app.task(name="tasks.add")
def add(x: int, y: int) -> int:
    return x + y
