"""What worker events cost: drain rate of N no-op tasks with events on and off.

Run from the repository root: ``.venv/bin/python -m benchmarks.events_cost [--n 10000]
[--runs 3] [-c N]``. Each run pre-fills the ``bench`` queue of a fresh vhost with N
``bench.noop`` tasks (no results), starts the default worker ``amqpq worker -A
bench_tasks`` (events on) or the same with ``--without-events``, and times the drain
(exact depth by passive declare). Runs alternate off/on so background noise hits both
alike. With events on, every task adds three events (received, started, succeeded) to
the worker's batches in the stream ``amqpq.events``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import aio_pika
import httpx

from amqpq.settings import Settings
from amqpq.transport.declare import declare_topology

HERE = Path(__file__).resolve().parent
MGMT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")


async def _fill(url: str, n: int) -> None:
    sys.path.insert(0, str(HERE))
    from bench_tasks import app  # type: ignore[import-not-found]

    app.settings = Settings(url=url)
    producer = app.aproducer()
    await producer.send_many(
        [__import__("amqpq").TaskCall("bench.noop") for _ in range(n)], concurrency=1000
    )
    await producer.close()


async def _depth(url: str) -> int:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("bench", passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


def run_once(n: int, concurrency: int | None, events: bool) -> float:
    vhost = f"bench-events-{uuid.uuid4().hex[:6]}"
    quoted = quote(vhost, safe="")
    with httpx.Client(base_url=MGMT, auth=AUTH) as api:
        api.put(f"/vhosts/{quoted}").raise_for_status()
        api.put(
            f"/permissions/{quoted}/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
        ).raise_for_status()
    url = f"amqp://guest:guest@127.0.0.1:5672/{quoted}"
    worker: subprocess.Popen[bytes] | None = None
    try:
        sys.path.insert(0, str(HERE))
        from bench_tasks import TOPOLOGY  # type: ignore[import-not-found]

        asyncio.run(declare_topology(Settings(url=url), TOPOLOGY))
        asyncio.run(_fill(url, n))
        args = ["-A", "bench_tasks", "-l", "WARNING"]
        args += ["-c", str(concurrency)] if concurrency else []
        args += [] if events else ["--without-events"]
        env = {**os.environ, "AMQPQ_URL": url}
        worker = subprocess.Popen(
            [sys.executable, "-m", "amqpq", "worker", "--no-declare", *args], cwd=HERE, env=env
        )
        # The clock starts when the worker starts consuming (its start-up is not timed).
        while (depth := asyncio.run(_depth(url))) >= n:
            time.sleep(0.005)
        start, start_depth = time.monotonic(), depth
        while asyncio.run(_depth(url)) > 0:
            time.sleep(0.01)
        return start_depth / (time.monotonic() - start)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        with httpx.Client(base_url=MGMT, auth=AUTH) as api:
            api.delete(f"/vhosts/{quoted}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-c", type=int, default=None, help="slots per worker [default worker]")
    args = parser.parse_args()
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.runs):
        for events in (False, True):
            rate = run_once(args.n, args.c, events)
            rates[events].append(rate)
            print(f"events={'on ' if events else 'off'} {rate:8.0f} tasks/s", flush=True)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"median: off {off:.0f}/s, on {on:.0f}/s ({(on - off) / off * 100:+.0f}%), "
        f"n={args.n}, runs={args.runs}, {f'-c {args.c}' if args.c else 'default worker'}"
    )


if __name__ == "__main__":
    main()
