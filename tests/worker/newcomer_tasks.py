"""Tasks of the newcomer tests (``-A newcomer_tasks``): retry without raise, shadow names,
a shared task declared before the App exists."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import newcomer_shared  # noqa: F401  (declares its shared task before the App below exists)

from amqpq.app import App
from amqpq.registry import TaskContext

app = App("nc", topology=Path(__file__).with_name("worker_topology.yaml"))


@app.task(name="nc.retry_bare", bind=True, max_retries=3)
def retry_bare(self: TaskContext) -> str:
    if self.request.retries == 0:
        self.retry(countdown=0.05)  # no raise: retry() must raise by itself
        return "went on after retry()"
    return f"retried {self.request.retries}"


@app.task(name="nc.aretry_bare", bind=True, max_retries=3)
async def aretry_bare(self: TaskContext) -> str:
    await asyncio.sleep(0)
    if self.request.retries == 0:
        self.retry(countdown=0.05)
        return "went on after retry()"
    return f"retried {self.request.retries}"


@app.task(name="nc.sleep")
def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@app.task(name="nc.fail")
def fail(message: str) -> None:
    raise ValueError(message)
