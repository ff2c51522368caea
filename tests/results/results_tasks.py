"""Tasks the result store tests run in real worker processes (``-A results_tasks``); the
store is the one ``AMQPQ_RESULT_BACKEND`` names, as a user's container would set it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from amqpq.app import App
from amqpq.registry import TaskContext

app = App("rt", topology=Path(__file__).with_name("results_topology.yaml"))


@app.task(name="rt.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="rt.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="rt.steps", bind=True, track_started=True)
def steps(self: TaskContext, count: int, hold: str = "") -> str:
    """Reports PROGRESS per step; waits while the file ``hold`` exists (the test removes it)."""
    for done in range(count):
        self.update_state(meta={"done": done + 1, "of": count})
    while hold and os.path.exists(hold):
        time.sleep(0.05)
    return f"{count} steps"


@app.task(name="rt.marked")
def marked(path: str) -> str:
    """Appends a line to ``path`` each time it runs (counts runs across worker restarts)."""
    with open(path, "a") as runs:
        runs.write("ran\n")
    return "marked"


@app.task(name="rt.short_lived", result_expires=0.5)
def short_lived() -> str:
    return "soon gone"
