"""The dashboard end to end: a stream full of events, indexed by a real ``amqpq dashboard``.

Run from the repository root: ``.venv/bin/python -m benchmarks.dashboard_stream
[--tasks 300000]``. In a fresh vhost it declares the infrastructure (the events
stream), appends the events of ``--tasks`` tasks (received, started, succeeded or
failed) as workers' batches of 500, starts ``amqpq dashboard`` on that vhost with a
new history file, and waits until ``/healthz`` counts every event indexed. Prints the
ingest rate from the stream and the dashboard process's resident memory (now and
peak), then the same after a restart (resumed from its offset: nothing to index).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx

from amqpq.settings import Settings
from amqpq.topology.models import Topology
from amqpq.transport.declare import declare_topology

MGMT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")


def _memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


async def _fill(url: str, tasks: int) -> int:
    import aio_pika

    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    events = 0
    batch: list[dict[str, object]] = []
    now = int(time.time() * 1000) - 3_600_000

    async def send() -> None:
        body = json.dumps({"worker": "bench:1", "events": batch}).encode()
        await channel.default_exchange.publish(
            aio_pika.Message(body, content_type="application/json"), routing_key="amqpq.events"
        )
        batch.clear()

    for n in range(tasks):
        ts = now + n * 3_600_000 // tasks
        common = {"id": str(uuid.uuid4()), "task": f"tasks.job{n % 20}", "queue": "default"}
        batch.append({**common, "type": "task.received", "ts": ts, "args": [n, "x" * 20]})
        batch.append({**common, "type": "task.started", "ts": ts})
        if n % 10 == 0:
            batch.append(
                {**common, "type": "task.failed", "ts": ts, "error": "ValueError", "message": "bad"}
            )
        else:
            batch.append({**common, "type": "task.succeeded", "ts": ts, "result": str(n)})
        events += 3
        if len(batch) >= 498:
            await send()
    if batch:
        await send()
    await connection.close()
    return events


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_dashboard(url: str, db: Path, events: int) -> tuple[float, float, float]:
    """Start a dashboard, wait until ``events`` are indexed: (seconds, RSS, peak RSS)."""
    port = _free_port()
    env = {**os.environ, "AMQPQ_URL": url}
    env.pop("AMQPQ_TOPOLOGY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "amqpq", "dashboard", "--port", str(port), "--db", str(db)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    started = time.monotonic()
    try:
        indexed = -1
        while indexed < events:
            time.sleep(0.2)
            if process.poll() is not None:
                raise RuntimeError(f"the dashboard exited ({process.returncode})")
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            except httpx.HTTPError:
                continue
            indexed = int(health["indexed_events"])
        seconds = time.monotonic() - started
        rss, peak = _memory(process.pid)
        return seconds, rss, peak
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=300_000)
    args = parser.parse_args()
    vhost = f"bench-dashboard-{uuid.uuid4().hex[:6]}"
    quoted = quote(vhost, safe="")
    with httpx.Client(base_url=MGMT, auth=AUTH) as api:
        api.put(f"/vhosts/{quoted}").raise_for_status()
        api.put(
            f"/permissions/{quoted}/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
        ).raise_for_status()
    url = f"amqp://guest:guest@127.0.0.1:5672/{quoted}"
    try:
        asyncio.run(declare_topology(Settings(url=url), Topology()))
        events = asyncio.run(_fill(url, args.tasks))
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "history.db"
            seconds, rss, peak = _run_dashboard(url, db, events)
            print(
                f"{events:,} events ({args.tasks:,} tasks) indexed from the stream in "
                f"{seconds:.1f} s ({events / seconds:,.0f} events/s, start-up included); "
                f"dashboard RSS {rss:.0f} MiB, peak {peak:.0f} MiB; "
                f"history file {db.stat().st_size / 2**20:.0f} MiB"
            )
            seconds, rss, peak = _run_dashboard(url, db, 0)
            print(f"restarted: RSS {rss:.0f} MiB, peak {peak:.0f} MiB (resumed at its offset)")
    finally:
        with httpx.Client(base_url=MGMT, auth=AUTH) as api:
            api.delete(f"/vhosts/{quoted}")


if __name__ == "__main__":
    main()
