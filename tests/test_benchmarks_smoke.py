"""The benchmark harness runs end to end (raw aio-pika and amqpq, a handful of tasks).

Timings are never asserted: this only proves that benchmarks/ still works with the
current producer and worker. Celery and Dramatiq are not in the project's venv, so
they are left out here (benchmarks/run.sh runs them in benchmarks/.venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(90)]


def test_the_benchmark_harness_measures_raw_and_amqpq_on_a_tiny_workload(tmp_path: Path) -> None:
    # Given a tiny workload in vhosts of its own
    out = tmp_path / "bench.json"
    prefix = f"bench-smoke-{uuid.uuid4().hex[:8]}-"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMQPQ_")}
    env["BENCH_LOG_DIR"] = str(tmp_path)

    # When the harness runs every cheap workload once
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--systems",
            "raw,amqpq",
            "--only",
            "enqueue,drain,rpc,coldstart",
            "--n",
            "30",
            "--runs",
            "1",
            "--rpc-n",
            "10",
            "--timeout",
            "30",
            "--idle",
            "0.5",
            "--vhost-prefix",
            prefix,
            "--json",
            str(out),
            "--markdown",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=80,
    )
    logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert done.returncode == 0, done.stderr + logs

    # Then every figure of both systems has a sample, and the table names them
    report = json.loads(out.read_text())
    assert report["skipped"] == {}
    for key in (
        "enqueue.one",
        "enqueue.bulk",
        "drain.one_slot",
        "drain.default",
        "rpc.p50",
        "coldstart",
        "rss",
    ):
        for system in ("raw", "amqpq"):
            figure = report["results"][key][system]
            assert figure.get("error") is None, (key, system, figure, done.stderr, logs)
            assert len(figure["samples"]) == 1, (key, system, figure)
    assert "| workload | raw | amqpq | amqpq / raw |" in done.stdout
    assert "Command: `python -m benchmarks" in done.stdout


def test_the_workflow_benchmark_runs_amqpq_on_a_tiny_workload(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMQPQ_")}
    env["BENCH_LOG_DIR"] = str(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.workflows",
            "--systems",
            "amqpq",
            "--runs",
            "1",
            "--chains",
            "2",
            "--members",
            "20",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=80,
    )
    logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert done.returncode == 0, done.stderr + logs
    assert "| chord of 20 no-op members, time to body (s) |" in done.stdout
