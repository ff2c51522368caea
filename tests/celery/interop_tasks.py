"""The amqpq side of the Celery tests: tasks a Celery producer calls by name
(``amqpq worker -A interop_tasks``)."""

from __future__ import annotations

import time
from pathlib import Path

from amqpq.app import App
from amqpq.registry import TaskContext

app = App("interop", topology=Path(__file__).with_name("celery_topology.yaml"))


@app.task(name="tasks.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tasks.greet")
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@app.task(name="tasks.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="tasks.clock")
def clock() -> float:
    """When it ran (seconds since the epoch): a countdown must not run it early."""
    return time.time()


@app.task(name="tasks.flaky", bind=True, max_retries=5)
def flaky(self: TaskContext, failures: int) -> int:
    """Fails ``failures`` times through ``self.retry``, then returns how often it retried."""
    if self.request.retries < failures:
        self.retry(countdown=0.1, exc=RuntimeError(f"attempt {self.request.retries} failed"))
    return self.request.retries


@app.task(name="tasks.busy")
def busy(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # short sleeps: a time limit can interrupt it
        time.sleep(0.01)
    return "done"


@app.task(name="tasks.mul")
def mul(x: int, y: int) -> int:
    return x * y


@app.task(name="tasks.note")
def note(value: object, path: str) -> None:
    """A callback's observable effect: appends ``value`` to the file at ``path``."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{value}\n")
