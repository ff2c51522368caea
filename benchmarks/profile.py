"""Where amqpq's time goes: py-spy profiles of the ``delay`` path and of a draining worker.

    benchmarks/.venv/bin/python -m benchmarks.profile delay [--n 5000]
    benchmarks/.venv/bin/python -m benchmarks.profile drain [--n 20000] [-c 1] [--value]

Writes ``/tmp/amqpq-<what>.txt`` (py-spy's collapsed stacks, loadable by speedscope
or flamegraph.pl) and prints the heaviest functions, by own time and with callees.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import HERE, PYTHON, Probe, amqp_url, delete_vhost, reset_vhost

VHOST = "bench-profile"
PY_SPY = str(Path(PYTHON).with_name("py-spy"))


def summarize(path: Path, top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples", "-- own time"]
    out += [f"{n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    out.append("-- with callees (amqpq, aio_pika, aiormq, pika, pydantic frames)")
    keep = ("amqpq", "aio_pika", "aiormq", "pika/", "pydantic", "asyncio/")
    rows = [(f, n) for f, n in inclusive.most_common() if any(k in f for k in keep)]
    out += [f"{n / total:6.1%}  {f}" for f, n in rows[:top]]
    return "\n".join(out)


def profile_delay(n: int) -> Path:
    out = Path("/tmp/amqpq-delay.txt")
    code = (
        "import time\n"
        "from benchmarks import bench_tasks as t\n"
        "for _ in range(50): t.noop.delay()\n"
        f"for _ in range({n}): t.noop.delay()\n"
        "t.app.close()\n"
    )
    env = {**os.environ, "AMQPQ_URL": amqp_url(VHOST)}
    subprocess.run(
        [PY_SPY, "record", "-r", "250", "-f", "raw", "-o", str(out), "--", PYTHON, "-c", code],
        env=env,
        check=True,
        cwd=HERE.parent,
    )
    return out


def profile_drain(n: int, concurrency: int, *, value: bool = False) -> Path:
    out = Path("/tmp/amqpq-drain.txt")
    os.environ["AMQPQ_URL"] = amqp_url(VHOST)
    from benchmarks import bench_tasks

    probe = Probe(VHOST)
    if value:  # tasks that return a value, a reply requested by a caller that is gone
        bench_tasks.app.producer.map(bench_tasks.add, [(1, 2)] * n)
        bench_tasks.app.close()
    else:
        bench_tasks.app.producer.map(bench_tasks.noop, [()] * n)
    probe.wait_depth(bench_tasks.QUEUE, n)
    argv = [PYTHON, "-m", "amqpq", "worker", "-A", "bench_tasks", "-Q", bench_tasks.QUEUE]
    argv += ["-c", str(concurrency), "-w", "1", "--loglevel", "WARNING"]
    spy = subprocess.Popen(
        [PY_SPY, "record", "-r", "250", "-f", "raw", "-o", str(out), "--", *argv],
        cwd=HERE,
        env={**os.environ},
    )
    started = time.perf_counter()
    while (probe.depth(bench_tasks.QUEUE) or (1, 0))[0] > 0:
        time.sleep(0.05)
    print(f"drained {n} in {time.perf_counter() - started:.1f}s (with start-up)", file=sys.stderr)
    worker = _child_of(spy.pid)
    if worker is not None:
        os.kill(worker, signal.SIGTERM)
    spy.wait(60)
    probe.close()
    bench_tasks.app.close()
    return out


def _child_of(pid: int) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                return int(entry)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["delay", "drain"])
    parser.add_argument("--n", type=int)
    parser.add_argument("-c", type=int, default=1, help="worker slots (drain)")
    parser.add_argument("--value", action="store_true", help="drain add(1, 2), not noop()")
    args = parser.parse_args()
    reset_vhost(VHOST)
    try:
        from amqpq.transport.declare import declare_topology

        os.environ["AMQPQ_URL"] = amqp_url(VHOST)
        import asyncio

        from benchmarks import bench_tasks

        asyncio.run(declare_topology(bench_tasks.app.settings, bench_tasks.app.topology))
        if args.what == "delay":
            path = profile_delay(args.n or 5000)
        else:
            path = profile_drain(args.n or 20000, args.c, value=args.value)
        print(summarize(path))
    finally:
        delete_vhost(VHOST)


if __name__ == "__main__":
    main()
