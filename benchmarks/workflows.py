"""Workflows, amqpq beside Celery with its Redis result backend, in one run.

Run from the repository root (Celery lives in benchmarks/.venv, which ``run.sh``
creates): ``benchmarks/.venv/bin/python -m benchmarks.workflows [--runs 3]
[--chains 30] [--members 1000]``.

Rows:

- a chain of 10 ``add`` tasks, end to end: ``chain(add.s(1, 1), add.s(1), ...)``
  sent and its last result received, one chain at a time (``--chains`` per run,
  median and p95 latency);
- a chord of ``--members`` no-op members (``echo(i)``) and a ``tsum`` body: from
  ``apply_async`` to the body's result (seconds).

amqpq runs with no result store (direct reply-to; the chord joins on its own queue);
Celery with ``redis://`` results, the backend its chords need (``rpc://`` does not
support them). Each system runs its default worker (amqpq: one process per core, 8
threads each; Celery: prefork, one child per core) on a vhost of its own. Runs
alternate the two systems so background noise hits both alike.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    PYTHON,
    Probe,
    WorkerProcess,
    amqp_url,
    delete_vhost,
    percentile,
    python_env,
    reset_vhost,
)

HERE = Path(__file__).resolve().parent
CHAIN_LENGTH = 10


def run_amqpq(vhost: str, chains: int, members: int) -> dict[str, Any]:
    url = amqp_url(vhost)
    os.environ["AMQPQ_URL"] = url  # the App reads it when the module creates it
    import asyncio

    from amqpq import chain, chord
    from amqpq.transport.declare import declare_topology

    tasks = importlib.import_module("benchmarks.bench_tasks")
    app = tasks.app  # its producer is closed after each run, and made again on the next
    asyncio.run(declare_topology(app.settings, app.topology))
    argv = [PYTHON, "-m", "amqpq", "worker", "-A", "bench_tasks", "-Q", tasks.QUEUE]
    argv += ["--loglevel", "WARNING"]
    worker = WorkerProcess(argv, env=python_env({"AMQPQ_URL": url}), cwd=HERE, label="wf-amqpq")
    probe = Probe(vhost)
    try:
        probe.wait_consumer(tasks.QUEUE, 60, worker.alive)
        return _measure(
            lambda: chain(tasks.add.s(1, 1), *[tasks.add.s(1) for _ in range(CHAIN_LENGTH - 1)]),
            lambda: chord((tasks.echo.s(i) for i in range(members)), tasks.tsum.s()),
            chains,
            members,
        )
    finally:
        worker.stop()
        probe.close()
        app.close()


def run_celery(vhost: str, chains: int, members: int) -> dict[str, Any]:
    url = amqp_url(vhost)
    os.environ["BENCH_CELERY_URL"] = url
    from celery import chain, chord

    tasks = importlib.import_module("benchmarks.celery_redis_tasks")
    argv = [PYTHON, "-m", "celery", "-A", "celery_redis_tasks", "worker", "-Q", tasks.QUEUE]
    argv += ["--loglevel", "WARNING", "-n", f"wf{os.getpid()}-{time.time_ns()}@%h"]
    env = python_env({"BENCH_CELERY_URL": url})
    worker = WorkerProcess(argv, env=env, cwd=HERE, label="wf-celery")
    probe = Probe(vhost)
    try:
        probe.wait_consumer(tasks.QUEUE, 60, worker.alive)
        return _measure(
            lambda: chain(tasks.add.s(1, 1), *[tasks.add.s(1) for _ in range(CHAIN_LENGTH - 1)]),
            lambda: chord((tasks.echo.s(i) for i in range(members)), tasks.tsum.s()),
            chains,
            members,
            queue=tasks.QUEUE,
        )
    finally:
        worker.stop()
        probe.close()
        tasks.app.close()


def _measure(
    make_chain: Any, make_chord: Any, chains: int, members: int, **options: Any
) -> dict[str, Any]:
    for _ in range(3):  # warm-up: connections, imports, the workers' first tasks
        assert make_chain().apply_async(**options).get(timeout=60) == CHAIN_LENGTH + 1
    latencies = []
    for _ in range(chains):
        started = time.perf_counter()
        value = make_chain().apply_async(**options).get(timeout=60)
        latencies.append(time.perf_counter() - started)
        assert value == CHAIN_LENGTH + 1
    started = time.perf_counter()
    total = make_chord().apply_async(**options).get(timeout=600)
    chord_s = time.perf_counter() - started
    assert total == sum(range(members)), total
    return {
        "chain_p50_ms": statistics.median(latencies) * 1000,
        "chain_p95_ms": percentile(latencies, 95) * 1000,
        "chord_s": chord_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chains", type=int, default=30)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--systems", default="amqpq,celery")
    args = parser.parse_args()
    systems = {"amqpq": run_amqpq, "celery": run_celery}
    chosen = [s for s in args.systems.split(",") if s]
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in chosen}
    for run in range(args.runs):
        for system in chosen:
            # One vhost per system for every run (the Apps read its URL once), made afresh.
            vhost = f"bench-wf-{system}-{os.getpid()}"
            reset_vhost(vhost)
            try:
                figures = systems[system](vhost, args.chains, args.members)
            finally:
                delete_vhost(vhost)
            results[system].append(figures)
            shown = " ".join(f"{k}={v:.2f}" for k, v in figures.items())
            print(f"run {run + 1} {system}: {shown}", flush=True)
    print(f"\nmedians of {args.runs} runs ({args.chains} chains, chord of {args.members}):")
    print("| workflow | " + " | ".join(chosen) + " |")
    print("| --- |" + " --- |" * len(chosen))
    rows = [
        ("chain of 10 tasks, end to end p50 (ms)", "chain_p50_ms", "{:.1f}"),
        ("chain of 10 tasks, end to end p95 (ms)", "chain_p95_ms", "{:.1f}"),
        (f"chord of {args.members} no-op members, time to body (s)", "chord_s", "{:.2f}"),
    ]
    for label, key, fmt in rows:
        cells = []
        for system in chosen:
            values = [r[key] for r in results[system]]
            cells.append(
                f"{fmt.format(statistics.median(values))} "
                f"({fmt.format(min(values))}-{fmt.format(max(values))})"
            )
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
