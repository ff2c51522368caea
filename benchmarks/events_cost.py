"""What worker events cost: drain rate of N no-op tasks with events on and off.

Run from the repository root: ``.venv/bin/python -m benchmarks.events_cost [--n 10000]
[--runs 3] [-c N]``. Each run pre-fills the ``bench`` queue of a fresh vhost with N
``bench.noop`` tasks (no results), starts the default worker ``amqpq worker -A
bench_tasks`` (events on) or the same with ``--without-events``, and times the drain
(exact depth by passive declare), and the CPU the worker's processes used per task
(the whole run, read from the reaped children's usage; steadier than the rate on a busy
machine). Runs alternate off/on so background noise hits both alike. With events on, every task adds three events (received, started, succeeded) to
the worker's batches in the stream ``amqpq.events``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(n: int, concurrency: int | None, events: bool) -> tuple[float, float]:
    """(drain rate in tasks/s, the worker processes' CPU in microseconds per task)."""
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
        cpu_before = _children_cpu()
        worker = subprocess.Popen(
            [sys.executable, "-m", "amqpq", "worker", "--no-declare", *args], cwd=HERE, env=env
        )
        # The clock starts when the worker starts consuming (its start-up is not timed).
        while (depth := asyncio.run(_depth(url))) >= n:
            time.sleep(0.005)
        start, start_depth = time.monotonic(), depth
        while asyncio.run(_depth(url)) > 0:
            time.sleep(0.01)
        rate = start_depth / (time.monotonic() - start)
        worker.terminate()
        worker.wait(30)
        # The whole run's CPU (start-up and shutdown too, alike with and without events):
        # unlike the drain rate, barely moved by what else the machine runs.
        cpu = (_children_cpu() - cpu_before) / n * 1e6
        worker = None
        return rate, cpu
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
    cpus: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.runs):
        for events in (False, True):
            rate, cpu = run_once(args.n, args.c, events)
            rates[events].append(rate)
            cpus[events].append(cpu)
            print(
                f"events={'on ' if events else 'off'} {rate:8.0f} tasks/s, "
                f"worker CPU {cpu:6.0f} us/task",
                flush=True,
            )
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    cpu_off, cpu_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    print(
        f"median: off {off:.0f}/s, on {on:.0f}/s ({(on - off) / off * 100:+.0f}%); "
        f"worker CPU off {cpu_off:.0f} us/task, on {cpu_on:.0f} us/task "
        f"({(cpu_on - cpu_off) / cpu_off * 100:+.0f}%); "
        f"n={args.n}, runs={args.runs}, {f'-c {args.c}' if args.c else 'default worker'}"
    )


if __name__ == "__main__":
    main()
