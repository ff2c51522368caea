"""The dashboard's history index with many tasks: ingest rate, memory, filtered-list latency.

Run from the repository root: ``.venv/bin/python -m benchmarks.dashboard_index
[--tasks 100000] [--db postgresql://user@host:port/db]``. It indexes synthetic events
(received, started, succeeded or failed for each task, as a worker's batches carry
them) into a fresh SQLite file (or fresh tables in PostgreSQL, under a table prefix
of their own, dropped at the end) in batches of 5,000, as the dashboard's ingest does, then times ``GET /api/tasks``
with filters through the real web application (no broker: ingest from the stream
is off). Prints events indexed per second, the process's peak RSS before and after,
the file's size, and p50/p99 of the filtered lists.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amqpq.dashboard.history import open_history

NAMES = [f"tasks.job{i}" for i in range(20)]


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(tasks: int, start: float) -> list[list[dict[str, Any]]]:
    """Batches of 5,000 events: three per task, 1 in 10 failed, spread over the last hour."""
    batches: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    for n in range(tasks):
        task_id = str(uuid.uuid4())
        name = NAMES[n % len(NAMES)]
        at = start + n * (3600 / tasks)
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        worker = f"host{n % 4}:1{n % 4}"
        common = {"id": task_id, "task": name, "worker": worker, "queue": "default"}
        batch.append({**common, "type": "task.received", "timestamp": stamp, "args": [n, "x" * 20]})
        batch.append({**common, "type": "task.started", "timestamp": stamp})
        if n % 10 == 0:
            batch.append(
                {
                    **common,
                    "type": "task.failed",
                    "timestamp": stamp,
                    "error": "ValueError",
                    "message": f"bad input {n}",
                    "runtime": 0.01,
                }
            )
        else:
            batch.append(
                {
                    **common,
                    "type": "task.succeeded",
                    "timestamp": stamp,
                    "result": str(n),
                    "runtime": 0.002,
                }
            )
        if len(batch) >= 5000:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def build(path: Path | str, tasks: int) -> tuple[int, float]:
    """Index ``tasks`` synthetic tasks into ``path`` (a file or a PostgreSQL URL): (events
    indexed, seconds spent indexing)."""
    index = open_history(str(path))
    events = 0
    elapsed = 0.0
    offset = 0
    # Generated a chunk at a time so the events in flight stay what ingest holds.
    per_chunk = 50_000
    try:
        for first in range(0, tasks, per_chunk):
            chunk = min(per_chunk, tasks - first)
            for batch in synthetic(chunk, time.time() - 3600):
                offset += 1
                started = time.perf_counter()
                events += index.ingest(batch, offset)
                elapsed += time.perf_counter() - started
    finally:
        index.close()
    return events, elapsed


QUERIES = {
    "state=FAILURE": {"state": "FAILURE"},
    "name=tasks.job7": {"name": "tasks.job7"},
    "name + state + page 3": {"name": "tasks.job3", "state": "SUCCESS", "offset": "100"},
    "worker + since 30m": {"worker": "host1:11", "since": "30m"},
    "search q=bad input 12": {"q": "bad input 12"},
}


def latency(path: Path | str, requests: int) -> dict[str, tuple[float, float, int]]:
    """Per query of :data:`QUERIES`: p50 and p99 in ms of ``GET /api/tasks``, and matches."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note about its test client's httpx
        from starlette.testclient import TestClient

    from amqpq.dashboard.web import DashboardConfig, create_app
    from amqpq.settings import Settings
    from amqpq.topology.models import Topology

    config = DashboardConfig(
        settings=Settings(), topology=Topology(), history=str(path), ingest=False
    )
    figures: dict[str, tuple[float, float, int]] = {}
    with TestClient(create_app(config)) as client:
        for label, params in QUERIES.items():
            times = []
            total = 0
            for _ in range(requests):
                started = time.perf_counter()
                response = client.get("/api/tasks", params=params)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
                total = int(response.json()["total"])
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            figures[label] = (statistics.median(times), p99, total)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--db", help="a postgresql:// URL instead of an SQLite file")
    args = parser.parse_args()
    if args.db:
        prefix = f"bench_{uuid.uuid4().hex[:8]}_"
        url = f"{args.db}{'&' if '?' in args.db else '?'}table_prefix={prefix}"
        try:
            report(url, args.tasks, args.requests)
        finally:
            import psycopg

            with psycopg.connect(args.db, autocommit=True) as conn:
                for table in ("tasks", "events", "workers", "minutes", "meta"):
                    conn.execute(f'DROP TABLE IF EXISTS "{prefix}{table}"')
        return
    with tempfile.TemporaryDirectory() as tmp:
        report(Path(tmp) / "history.db", args.tasks, args.requests)


def report(path: Path | str, tasks: int, requests: int) -> None:
    """Index, then time the filtered lists, and print the figures."""
    rss_before = _rss_mib()
    events, elapsed = build(path, tasks)
    rss_after = _rss_mib()
    print(
        f"indexed {events:,} events ({tasks:,} tasks) in {elapsed:.1f} s: "
        f"{events / elapsed:,.0f} events/s"
    )
    size = f"; file {os.path.getsize(path) / 2**20:.0f} MiB" if isinstance(path, Path) else ""
    print(f"RSS {rss_before:.0f} MiB before, {rss_after:.0f} MiB after{size}")
    for label, (p50, p99, total) in latency(path, requests).items():
        print(f"GET /api/tasks?{label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({total:,} match)")


if __name__ == "__main__":
    main()
