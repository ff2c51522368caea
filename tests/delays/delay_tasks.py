"""Tasks the delay tests run in real worker processes (``-A delay_tasks``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from amqpq.app import App
from amqpq.registry import TaskContext

TOPOLOGY = Path(__file__).with_name("delays_topology.yaml")
app = App("dt", topology=TOPOLOGY)


@app.task(name="dt.stamp")
def stamp(tag: str = "") -> dict[str, Any]:
    """When it ran (wall clock), so the test can compare with when it was sent."""
    return {"tag": tag, "at": time.time()}


@app.task(name="dt.retry_n", bind=True, max_retries=10)
def retry_n(self: TaskContext, times: int, countdown: float) -> int:
    """Retries ``times`` times, ``countdown`` s apart (the same delay levels each time)."""
    if self.request.retries < times:
        raise self.retry(countdown=countdown)
    return self.request.retries


@app.task(
    name="dt.needs_flag", max_retries=2, autoretry_for=(FileNotFoundError,), default_retry_delay=0.1
)
def needs_flag(flag: str) -> str:
    """Fails (and is retried) while the flag file is missing."""
    return Path(flag).read_text()


@app.task(name="dt.touch")
def touch(path: str) -> None:
    Path(path).write_text("ran")


@app.task(name="dt.poison")
def poison() -> None:
    """Kills the process running it, every time: no exception, no reply, no ack."""
    os._exit(1)
