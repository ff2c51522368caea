"""docs/workflows.md's example (SPEC §11's block) runs as written against RabbitMQ with
no result store: its ``tasks.py`` under a worker, its workflow block in a script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import Processes, amqpq_env

pytestmark = pytest.mark.rabbitmq

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"
TOPOLOGY = """\
exchanges:
  - {name: tasks, type: direct}
queues:
  - name: default
    bindings: [{exchange: tasks, routing_key: default}]
  - name: high_priority
    bindings: [{exchange: tasks, routing_key: high}]
routes:
  "*": {exchange: tasks, routing_key: default}
"""
CHECKS = """
assert r.get(timeout=10) == 80 and r.parent.get(timeout=10) == 8
assert g.get(timeout=10) == [i * 2 for i in range(10)]
assert g.ready() and g.completed_count() == 10 and len(g.results) == 10
assert c.get(timeout=10) == 90
print("example ok")
"""


def example_blocks() -> tuple[str, str]:
    section = DOC.read_text().split("## An example", 1)[1].split("\n## ", 1)[0]
    tasks, workflow = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    return tasks, workflow


def test_the_workflows_example_runs_as_written(
    tmp_path: Path, broker_url: str, amqpq_processes: Processes
) -> None:
    tasks, workflow = example_blocks()
    assert "chord((add.s(i, i) for i in range(10)), tsum.s())" in workflow
    (tmp_path / "tasks.py").write_text(tasks)
    (tmp_path / "amqpq.yaml").write_text(TOPOLOGY)
    (tmp_path / "example.py").write_text(workflow + CHECKS)
    env = amqpq_env(broker_url)
    env.pop("AMQPQ_RESULT_BACKEND", None)
    amqpq_processes.start(
        "worker", "-A", "tasks", "-c", "4", env=env, cwd=tmp_path
    ).started_blocking()

    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "example ok" in done.stdout
