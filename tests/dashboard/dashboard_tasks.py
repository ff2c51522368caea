"""Tasks the dashboard tests run in a real default worker (``-A dashboard_tasks``)."""

from __future__ import annotations

import time
from pathlib import Path

from amqpq.app import App

app = App("dt", topology=Path(__file__).with_name("dashboard_topology.yaml"))


@app.task(name="dt.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="dt.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="dt.flaky")
def flaky(marker: str) -> str:
    """Fails until the file ``marker`` exists: a retry from the dashboard then succeeds."""
    if not Path(marker).exists():
        raise RuntimeError("not yet")
    return "ok"


@app.task(name="dt.sleep")
def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"
