"""Cold start, idle memory and CPU of the default worker, two or more source trees back to back.

    .venv/bin/python -m benchmarks.coldstart_ab --runs 8 main=/tmp/main-tree branch=.

Each NAME=TREE is a directory holding an ``amqpq/`` package (``git archive main amqpq |
tar -x -C /tmp/main-tree`` for main's), put first on the worker's PYTHONPATH so that it
is the amqpq imported; compile each tree first (``python -m compileall -q TREE/amqpq``)
where PYTHONDONTWRITEBYTECODE is set. Every run starts ``amqpq worker -A bench_tasks -Q
bench`` from each tree in turn (interleaved: noise hits them alike), as ``run.py``'s
``w_coldstart`` does: spawn -> a consumer visible on the queue (passive declares every
5 ms), then after ``--idle`` seconds the tree's PSS and RSS, and the CPU time (user +
system) the supervisor and each worker used so far. On a shared machine the wall time
moves with the load; PSS and CPU time move much less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.harness import (
    HERE,
    Probe,
    WorkerProcess,
    _proc_tree,
    amqp_url,
    delete_vhost,
    reset_vhost,
)

VHOST = "bench-coldstart-ab"
MB = 1024 * 1024


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="+", metavar="NAME=TREE")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before measuring")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the workers")
    args = parser.parse_args()
    trees = {
        name: str(Path(tree).resolve()) for name, tree in (t.split("=", 1) for t in args.trees)
    }
    reset_vhost(VHOST)
    try:
        _measure(args, trees)
    finally:
        delete_vhost(VHOST)


def _measure(args: argparse.Namespace, trees: dict[str, str]) -> None:
    probe = Probe(VHOST)
    figures: dict[str, dict[str, list[float]]] = {
        name: {key: [] for key in ("cold", "pss", "rss", "cpu_sup", "cpu_worker")} for name in trees
    }
    for run in range(args.runs):
        for name, tree in trees.items():
            env = dict(os.environ, AMQPQ_URL=amqp_url(VHOST), PYTHONPATH=tree)
            argv = [
                os.path.abspath(args.python),
                "-m",
                "amqpq",
                "worker",
                "-A",
                "bench_tasks",
                "-Q",
                "bench",
            ]
            worker = WorkerProcess(
                [*argv, "--loglevel", "WARNING"], env=env, cwd=HERE, label=f"ab-{name}"
            )
            try:
                consuming = probe.wait_consumer("bench", 120, worker.alive)
                cold = consuming - worker.started
                time.sleep(args.idle)
                pids = _proc_tree(worker.pid)
                children = [pid for pid in pids if pid != worker.pid]
                row = figures[name]
                row["cold"].append(cold)
                row["pss"].append(worker.tree_pss() / MB)
                row["rss"].append(worker.tree_rss() / MB)
                row["cpu_sup"].append(_cpu_seconds(worker.pid))
                row["cpu_worker"].append(
                    statistics.mean(_cpu_seconds(pid) for pid in children) if children else 0.0
                )
            finally:
                worker.stop()
            print(f"run {run + 1}/{args.runs} {name}: {cold:.3f} s", flush=True)
    for name, row in figures.items():
        print(
            f"{name}: cold start median {statistics.median(row['cold']):.3f} s "
            f"[{', '.join(f'{x:.3f}' for x in row['cold'])}]; "
            f"PSS median {statistics.median(row['pss']):.1f} MiB "
            f"[{', '.join(f'{x:.1f}' for x in row['pss'])}]; "
            f"RSS median {statistics.median(row['rss']):.1f} MiB; "
            f"CPU mean: supervisor {statistics.mean(row['cpu_sup']) * 1000:.0f} ms, "
            f"a worker {statistics.mean(row['cpu_worker']) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
