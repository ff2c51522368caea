"""Tasks the ops tests run in a real worker (``-A ops_tasks``)."""

from __future__ import annotations

from pathlib import Path

from amqpq.app import App

app = App("ops", topology=Path(__file__).with_name("ops_topology.yaml"))


@app.task(name="ops.fragile")
def fragile(fixed_flag: str, done_file: str) -> str:
    """Fails like a bug until the "fix" (the flag file) is deployed, then records its run."""
    if not Path(fixed_flag).exists():
        raise ValueError("bug: the flag file is missing")
    Path(done_file).write_text("done")
    return "done"


@app.task(name="ops.add")
def add(x: int, y: int) -> int:
    return x + y
