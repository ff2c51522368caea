"""CPU per drained message: the worker's process tree and the broker, side by side.

    benchmarks/.venv/bin/python -m benchmarks.cpu [--n 20000] [--runs 3] [--mode default] [--value]

For each system: fill the queue (untimed), start its worker, and while it drains read
the CPU time (user + system) of the worker's process tree and of RabbitMQ's
``beam.smp`` from /proc. Prints microseconds of CPU per message for each, and the
drain rate: on a machine whose cores the broker shares, a worker that spends less CPU
per message leaves more to the broker.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psutil

from benchmarks.harness import HERE, Probe, WorkerProcess, delete_vhost, reset_vhost
from benchmarks.systems import SYSTEMS


def _tree_cpu(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _broker() -> psutil.Process:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "beam.smp":
            return proc
    raise SystemExit("no beam.smp process found")


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def measure(
    system_name: str, n: int, mode: str, *, value: bool = False
) -> tuple[float, float, float]:
    system = SYSTEMS[system_name]("bench-cpu")
    reset_vhost(system.vhost)
    probe = Probe(system.vhost)
    broker = _broker()
    try:
        system.prepare(probe)
        probe.purge(system.queue)
        if value:
            system.fill_values(n)
        else:
            system.fill(n, None)
        probe.wait_depth(system.queue, n)
        argv, env = system.worker(mode)
        worker = WorkerProcess(argv, env=env, cwd=HERE, label=f"cpu-{system_name}")
        try:
            # Count from the first delivery: start-up (imports, declares) is not per message.
            while (depth := probe.depth(system.queue)) is None or depth[0] >= n:
                time.sleep(0.005)
            worker_start, broker_start, start = _tree_cpu(worker.pid), _cpu(broker), time.time()
            left = n
            while left > n // 20:  # stop at 95%: the tail is partly idle waiting
                time.sleep(0.01)
                depth = probe.depth(system.queue)
                left = depth[0] if depth else left
            drained = n - left
            elapsed = time.time() - start
            worker_cpu = _tree_cpu(worker.pid) - worker_start
            broker_cpu = _cpu(broker) - broker_start
        finally:
            worker.stop()
        system.close()
    finally:
        probe.close()
        delete_vhost(system.vhost)
    return worker_cpu / drained * 1e6, broker_cpu / drained * 1e6, drained / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", default="default", choices=["default", "one_slot", "solo"])
    parser.add_argument("--systems", default="raw,amqpq,dramatiq")
    parser.add_argument(
        "--value",
        action="store_true",
        help="add(1, 2) tasks sent with default options (a reply requested), not noop()",
    )
    args = parser.parse_args()
    names = args.systems.split(",")
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for _ in range(args.runs):
        for name in names:
            samples[name].append(measure(name, args.n, args.mode, value=args.value))
    what = "add(1, 2) with default options" if args.value else "noop()"
    print(f"mode {args.mode}, {what}, {args.n} tasks, {args.runs} runs (medians)")
    print("| system | worker CPU per message | broker CPU per message | drain rate |")
    print("|---|---|---|---|")
    for name, rows in samples.items():
        worker, broker, rate = (statistics.median(col) for col in zip(*rows, strict=True))
        print(f"| {name} | {worker:.0f} us | {broker:.0f} us | {rate:,.0f} msg/s |")


if __name__ == "__main__":
    main()
