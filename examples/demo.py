"""The README's demo: routed workers, tasks through all four exchange types, results back.

Run it with ``./scripts/demo.sh`` (which installs everything, starts RabbitMQ when
none answers and applies ``examples/amqpq.yaml``), or by hand once the topology
is applied::

    .venv/bin/python examples/demo.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tasks import add, app, audit, on_signup, render_pdf, send_email  # noqa: E402

WORKER_QUEUES = ["default", "high_priority", "signups", "audit_a", "pdf"]


def start_workers() -> list[subprocess.Popen[bytes]]:
    """One single-queue worker process per queue, as an operator would run them."""
    workers = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for queue in WORKER_QUEUES:
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "amqpq",
                    "worker",
                    "-A",
                    "tasks",
                    "-Q",
                    queue,
                    "-c",
                    "2",
                    "-f",
                    str(HERE / "amqpq.yaml"),
                    "--loglevel",
                    "WARNING",
                ],
                cwd=HERE,
                env=env,
            )
        )
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def main() -> int:
    workers = start_workers()
    try:
        started = time.monotonic()
        calls = [
            ("direct  tasks -> default       ", "tasks.add(3, 4)", add.delay(3, 4)),
            (
                "direct  tasks -> high_priority ",
                "tasks.send_email(...)",
                send_email.delay("ada@example.com", "Welcome aboard"),
            ),
            ("topic   events -> signups      ", "tasks.on_signup(...)", on_signup.delay(42, "ada")),
            (
                "fanout  broadcast -> audit_a   ",
                "tasks.audit(...)",
                audit.delay("login", {"user": 42}),
            ),
            (
                "headers reports -> pdf         ",
                "reports.pdf(...)",
                render_pdf.delay("invoice-2026-0042"),
            ),
        ]
        print(f"sent {len(calls)} tasks; waiting for results\n")
        failures = 0
        for route, call, result in calls:
            try:
                value = result.get(timeout=60)
                print(f"  {route} {call:26} = {value!r}")
            except Exception as exc:  # the demo reports every outcome, then exits non-zero
                failures += 1
                print(f"  {route} {call:26} FAILED: {exc}")
        print(f"\nall results in {time.monotonic() - started:.2f}s")
        return 1 if failures else 0
    finally:
        app.close()
        stop_workers(workers)


if __name__ == "__main__":
    raise SystemExit(main())
