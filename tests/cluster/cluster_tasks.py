"""Tasks the cluster suite runs in real worker processes (``-A cluster_tasks``)."""

from __future__ import annotations

import time
from pathlib import Path

from amqpq.app import App
from amqpq.registry import TaskContext
from tests.support.fleet import record_run

app = App("cl", topology=Path(__file__).with_name("cluster_topology.yaml"))


@app.task(name="cl.work", bind=True)
def work(self: TaskContext, index: int, seconds: float = 0.01) -> int:
    """A little work, then one line in the run log: which task finished, where and when."""
    time.sleep(seconds)
    record_run(self.request.id)
    return index


@app.task(name="cl.tick")
def tick() -> None:
    return None
