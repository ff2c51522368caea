"""The tasks of the workflow tests: run by ``amqpq worker -A flows`` (cwd: this folder) and
by the test process, on RabbitMQ or in memory (``make_flows(settings)``).

Tasks that leave a trace (link callbacks, errbacks, chord bodies, members that crash)
append a JSON line to a file in ``$FLOWS_DIR``, so a test counts how often each ran.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from amqpq import App, TaskContext
from amqpq.settings import Settings

HERE = Path(__file__).resolve().parent


def trace(name: str, value: Any) -> None:
    folder = os.environ.get("FLOWS_DIR")
    if folder:
        with (Path(folder) / f"{name}.jsonl").open("a") as out:
            out.write(json.dumps(value) + "\n")


def traced(folder: Path, name: str) -> list[Any]:
    path = folder / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


class Flows:
    """An App and its tasks, named ``flows.*`` wherever the module is imported from."""

    def __init__(self, settings: Settings | None = None, result_backend: str | None = None) -> None:
        app = self.app = App(
            "flows",
            settings=settings,
            topology=HERE / "workflows.yaml",
            result_backend=result_backend,
        )

        @app.task(name="flows.add")
        def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="flows.mul")
        def mul(x: int, y: int) -> int:
            return x * y

        @app.task(name="flows.tsum")
        def tsum(numbers: list[int]) -> int:
            return sum(numbers)

        @app.task(name="flows.noop")
        def noop(i: int) -> int:
            return i

        @app.task(name="flows.fail", max_retries=0)
        def fail(x: int, message: str = "boom") -> int:
            raise ValueError(message)

        @app.task(name="flows.upper")
        def upper(text: str) -> str:
            return text.upper()

        @app.task(name="flows.record")
        def record(value: Any, tag: str) -> None:
            trace(tag, value)

        @app.task(name="flows.collect")
        def collect(results: list[int], tag: str) -> int:
            trace(tag, results)
            return len(results)

        @app.task(name="flows.slow", acks_late=True)
        def slow(i: int, seconds: float, tag: str) -> int:
            trace(tag, i)  # "started": the test kills the worker now
            time.sleep(seconds)
            return i

        @app.task(name="flows.flaky", bind=True, max_retries=3)
        def flaky(self: TaskContext, i: int) -> int:
            if self.request.retries == 0:
                self.retry(countdown=0.2)
            return i

        @app.task(name="flows.unless_broken", max_retries=0)
        def unless_broken(i: int) -> int:
            folder = os.environ.get("FLOWS_DIR")
            if folder and (Path(folder) / "broken").exists():
                raise ValueError(f"member {i} is broken")
            return i

        self.flaky, self.unless_broken = flaky, unless_broken
        self.add, self.mul, self.tsum, self.noop, self.fail = add, mul, tsum, noop, fail
        self.upper, self.record, self.collect, self.slow = upper, record, collect, slow


app = Flows().app
