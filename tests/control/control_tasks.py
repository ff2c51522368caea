"""Tasks and hooks the operations tests run in real worker processes (``-A control_tasks``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from amqpq.app import App
from amqpq.registry import TaskContext

app = App("ct", topology=Path(__file__).with_name("control_topology.yaml"))
HOOKS_FILE = os.environ.get("CT_HOOKS_FILE")


@app.task(name="ct.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="ct.sleep", track_started=True)
def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@app.task(name="ct.asleep", track_started=True)
async def asleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@app.task(name="ct.long", time_limit=3600)
def long() -> None:
    return None


@app.task(name="ct.limited", rate_limit="5/s")
def limited(index: int) -> float:
    return time.time()


@app.task(name="ct.header", bind=True)
def header(self: TaskContext, name: str) -> Any:
    return self.request.headers.get(name)


def _record(line: str) -> None:
    if HOOKS_FILE:
        with open(HOOKS_FILE, "a") as f:
            f.write(f"{line} {os.getpid()}\n")


@app.on_worker_start
def started(worker: Any, **_: Any) -> None:
    _record("worker_start")


@app.on_worker_stop
def stopped(worker: Any, **_: Any) -> None:
    _record("worker_stop")


@app.on_task_prerun
def prerun(request: Any, task: Any, **_: Any) -> None:
    _record(f"task_prerun {task.name}")


@app.on_task_success
def success(request: Any, task: Any, result: Any, **_: Any) -> None:
    _record(f"task_success {task.name} {result}")


@app.on_task_postrun
def postrun(request: Any, task: Any, state: str, **_: Any) -> None:
    _record(f"task_postrun {task.name} {state}")
