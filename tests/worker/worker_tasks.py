"""Tasks the worker tests run in real worker processes (``-A worker_tasks``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from amqpq.app import App
from amqpq.registry import TaskContext
from amqpq.worker import SoftTimeLimitExceeded

app = App("wt", topology=Path(__file__).with_name("worker_topology.yaml"))


@app.task(name="wt.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="wt.aadd")
async def aadd(x: int, y: int) -> int:
    await asyncio.sleep(0.01)
    return x + y


@app.task(name="wt.sleep", track_started=True)
def sleep(seconds: float, tag: str = "") -> str:
    time.sleep(seconds)
    return f"slept {tag}".strip()


@app.task(name="wt.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="wt.progress", bind=True)
def progress(self: TaskContext, steps: int) -> str:
    for step in range(1, steps + 1):
        self.update_state(meta={"step": step})
    return f"{self.request.id} done"


@app.task(name="wt.exit_once")
def exit_once(marker: str) -> str:
    """Kills its process the first time (no cleanup at all), succeeds when redelivered."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)
    return f"survived {path.read_text()}"


@app.task(name="wt.forever", time_limit=1.0)
def forever() -> None:
    while True:
        time.sleep(0.05)


@app.task(name="wt.soft", soft_time_limit=0.3)
def soft() -> str:
    try:
        while True:
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        return "cleaned up"


@app.task(name="wt.flaky", bind=True, max_retries=3)
def flaky(self: TaskContext, succeed_on: int) -> int:
    if self.request.retries < succeed_on:
        raise self.retry(countdown=0.05)
    return self.request.retries


@app.task(
    name="wt.always_broken",
    max_retries=1,
    autoretry_for=(ConnectionError,),
    default_retry_delay=0.05,
)
def always_broken() -> None:
    raise ConnectionError("the service is down")


@app.task(name="wt.record")
def record(path: str, tag: str) -> str:
    """Appends ``tag`` to the file at ``path``: one line per run, so a test counts the runs."""
    with open(path, "a", encoding="utf-8") as runs:
        runs.write(tag + "\n")
    return tag
