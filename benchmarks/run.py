"""amqpq vs Celery vs Dramatiq vs a bare aio-pika client, on the same RabbitMQ, in one run.

    benchmarks/run.sh [--n 10000] [--runs 3] [--only drain,rpc] [--systems amqpq,raw]
                      [--json out.json] [--markdown]

See benchmarks/README.md for what each workload measures and how.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    HERE,
    Figure,
    Probe,
    WorkerProcess,
    delete_vhost,
    percentile,
    reset_vhost,
)
from benchmarks.systems import SYSTEMS, NotSupported, System

WORKLOADS = ("enqueue", "drain", "rpc", "coldstart", "blob", "scaling", "store", "dashboard")
DASHBOARD_TASKS = 100_000
SCALE = (1, 2, 4)
MB = 1024 * 1024


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = True


METRICS: dict[str, list[Metric]] = {
    "enqueue": [
        Metric("enqueue.one", "enqueue one at a time (raw: sequential confirms)", "msg/s"),
        Metric(
            "enqueue.one_value",
            "enqueue add(1, 2) one at a time, default options: a reply requested (raw: as above)",
            "msg/s",
        ),
        Metric("enqueue.bulk", "enqueue, bulk API (raw: 1000 confirms in flight)", "msg/s"),
        Metric("enqueue.bulk_async", "enqueue, async bulk API (raw: same as above)", "msg/s"),
    ],
    "drain": [
        Metric("drain.one_slot", "drain, 1 process, 1 slot, prefetch 1, late ack", "msg/s"),
        Metric(
            "drain.solo",
            "drain, 1 process, 1 slot, tasks on the consumer's thread (amqpq --pool solo)",
            "msg/s",
        ),
        Metric("drain.default", "drain, default worker (raw: prefetch 100)", "msg/s"),
        Metric(
            "drain.one_slot_value",
            "drain add(1, 2) sent with default options, caller gone, 1 slot (raw: no reply)",
            "msg/s",
        ),
        Metric(
            "drain.default_value",
            "drain add(1, 2) sent with default options, caller gone, default worker"
            " (raw: no reply)",
            "msg/s",
        ),
        Metric(
            "drain.without_events",
            "drain, default worker --without-events (amqpq only; events are on by default)",
            "msg/s",
        ),
    ],
    "store": [
        Metric("store.none", "drain add(1, 2), default worker, results kept nowhere", "msg/s"),
        Metric("store.redis", "drain add(1, 2), default worker, every result in Redis", "msg/s"),
        Metric(
            "store.postgres", "drain add(1, 2), default worker, every result in PostgreSQL", "msg/s"
        ),
    ],
    "rpc": [
        Metric("rpc.p50", "RPC add(1, 2) round trip p50", "ms", False),
        Metric("rpc.p99", "RPC add(1, 2) round trip p99", "ms", False),
    ],
    "coldstart": [
        Metric("coldstart", "default worker: spawn -> consuming", "s", False),
        Metric("rss", "default worker: idle RSS (process tree)", "MiB", False),
        Metric("pss", "default worker: idle PSS (process tree, shared pages split)", "MiB", False),
    ],
    "blob": [
        Metric("blob.enqueue", "1 MB payloads: enqueue one at a time", "msg/s"),
        Metric("blob.drain", "1 MB payloads: drain, 1 slot", "msg/s"),
    ],
    "dashboard": [
        Metric(
            "dashboard.ingest",
            f"dashboard: events indexed per second ({DASHBOARD_TASKS:,} tasks, amqpq only)",
            "ev/s",
        ),
        Metric(
            "dashboard.tasks_p50",
            f"dashboard: GET /api/tasks?state=FAILURE p50, {DASHBOARD_TASKS:,} tasks indexed",
            "ms",
            False,
        ),
        Metric(
            "dashboard.search_p50",
            f"dashboard: GET /api/tasks?q=TEXT p50, {DASHBOARD_TASKS:,} tasks indexed",
            "ms",
            False,
        ),
    ],
    "scaling": [
        Metric(f"scale.{n}", f"drain, {n} worker process{'es' if n > 1 else ''} x 1 slot", "msg/s")
        for n in SCALE
    ],
}

# (label, metric, numerator system, denominator system, bound, "ge" | "le")
TARGETS = [
    # A denominator "system:metric" compares two rows of one system.
    ("delay one at a time >= 0.95x raw sequential", "enqueue.one", "amqpq", "raw", 0.95, "ge"),
    ("  and >= 1.0x Dramatiq's send()", "enqueue.one", "amqpq", "dramatiq", 1.0, "ge"),
    (
        "delay add(1, 2), reply requested, >= 1.0x Dramatiq",
        "enqueue.one_value",
        "amqpq",
        "dramatiq",
        1.0,
        "ge",
    ),
    ("bulk enqueue >= 0.8x raw pipelined", "enqueue.bulk", "amqpq", "raw", 0.8, "ge"),
    ("async bulk enqueue >= 1.0x raw pipelined", "enqueue.bulk_async", "amqpq", "raw", 1.0, "ge"),
    ("drain one slot >= 0.75x raw prefetch=1", "drain.one_slot", "amqpq", "raw", 0.75, "ge"),
    ("  and >= 1.0x Dramatiq", "drain.one_slot", "amqpq", "dramatiq", 1.0, "ge"),
    ("  the same with --pool solo >= 0.95x raw", "drain.solo", "amqpq", "raw", 0.95, "ge"),
    ("default worker >= 1.3x Dramatiq's default", "drain.default", "amqpq", "dramatiq", 1.3, "ge"),
    (
        "add(1, 2), default options, one slot >= 0.75x raw",
        "drain.one_slot_value",
        "amqpq",
        "raw",
        0.75,
        "ge",
    ),
    (
        "  and >= 1.0x Dramatiq",
        "drain.one_slot_value",
        "amqpq",
        "dramatiq",
        1.0,
        "ge",
    ),
    (
        "add(1, 2), default options, default worker >= 1.3x Dramatiq",
        "drain.default_value",
        "amqpq",
        "dramatiq",
        1.3,
        "ge",
    ),
    (
        "events cost <= 10%: default >= 0.9x --without-events",
        "drain.default",
        "amqpq",
        "amqpq:drain.without_events",
        0.9,
        "ge",
    ),
    ("RPC p50 <= 1.15x raw direct reply-to", "rpc.p50", "amqpq", "raw", 1.15, "le"),
    ("cold start <= 0.15 s", "coldstart", "amqpq", None, 0.15, "le"),
    ("  and <= 1.0x Dramatiq's", "coldstart", "amqpq", "dramatiq", 1.0, "le"),
    ("dashboard filtered task list p50 <= 100 ms", "dashboard.tasks_p50", "amqpq", None, 100, "le"),
    ("idle PSS <= 37 MiB", "pss", "amqpq", None, 37.0, "le"),
    ("  and <= 1.0x Dramatiq's", "pss", "amqpq", "dramatiq", 1.0, "le"),
]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, dict[str, Figure]] = {}
        self.systems: dict[str, System] = {}
        self.skipped: dict[str, str] = {}
        self.probes: dict[str, Probe] = {}
        self.notes: dict[str, set[str]] = {}

    # -- bookkeeping ------------------------------------------------------------------------

    def figure(self, key: str, system: str) -> Figure:
        metric = next(m for ms in METRICS.values() for m in ms if m.key == key)
        per = self.results.setdefault(key, {})
        if system not in per:
            per[system] = Figure(metric.unit, higher_is_better=metric.higher_is_better)
        return per[system]

    def record(self, key: str, system: str, measure: Callable[[], float]) -> None:
        fig = self.figure(key, system)
        if fig.error is not None and fig.error.startswith("n/a"):
            return  # unsupported: no need to ask again every run
        try:
            value = measure()
        except NotSupported as exc:
            fig.error = f"n/a: {exc}"
            return
        except Exception as exc:
            fig.error = f"error: {type(exc).__name__}: {exc}"
            self.log(f"  {system} {key}: {fig.error}")
            if self.args.verbose:
                traceback.print_exc()
            return
        fig.samples.append(value)
        self.log(f"  {system:9} {key:18} {_fmt(value, fig.unit)}")

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # -- set-up -----------------------------------------------------------------------------

    def setup(self) -> None:
        for name in self.args.systems:
            system = SYSTEMS[name](self.args.vhost_prefix)
            reason = system.unavailable()
            if reason:
                self.skipped[name] = reason
                self.log(f"{name}: skipped: {reason}")
                continue
            reset_vhost(system.vhost)
            self.probes[name] = Probe(system.vhost)
            system.prepare(self.probes[name])
            self.systems[name] = system

    def teardown(self) -> None:
        for name, system in self.systems.items():
            try:
                system.close()
            except Exception as exc:
                self.log(f"{name}: closing failed: {exc!r}")
            self.probes[name].close()
            if not self.args.keep_vhosts:
                delete_vhost(system.vhost)

    # -- building blocks --------------------------------------------------------------------

    def start_worker(self, system: System, mode: str, procs: int = 1) -> WorkerProcess:
        argv, env = system.worker(mode, procs)
        label = f"{system.name}-{mode}{procs if mode == 'procs' else ''}"
        return WorkerProcess(argv, env=env, cwd=HERE, label=label)

    def drain(
        self,
        system: System,
        mode: str,
        procs: int = 1,
        *,
        n: int,
        data: str | None = None,
        fill: Callable[[int], None] | None = None,
    ) -> float:
        system.worker(mode, procs)  # n/a before filling the queue for nothing
        probe = self.probes[system.name]
        probe.purge(system.queue)
        if fill is None:
            system.fill(n, data)
        else:
            fill(n)
        probe.wait_depth(system.queue, n)
        probe.wait_depth(system.queue, n)  # the first poll must see it untouched
        worker = self.start_worker(system, mode, procs)
        try:
            seconds = probe.time_drain(
                system.queue, n, self.args.timeout, worker.alive, self.args.poll
            )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; worker log {worker.log}:\n{worker.tail()}") from exc
        finally:
            worker.stop()
        probe.purge(system.queue)
        return n / seconds

    def enqueue(self, system: System, send: Callable[[int], float], n: int) -> float:
        probe = self.probes[system.name]
        probe.purge(system.queue)
        seconds = send(n)
        probe.purge(system.queue)
        return n / seconds

    # -- workloads --------------------------------------------------------------------------

    def w_enqueue(self, system: System) -> None:
        n = self.args.n
        self.record("enqueue.one", system.name, lambda: self.enqueue(system, system.enqueue_one, n))
        self.record(
            "enqueue.one_value",
            system.name,
            lambda: self.enqueue(system, system.enqueue_one_value, n),
        )
        if system.name == "raw":
            bulk = lambda: self.enqueue(system, system.enqueue_bulk, n)  # noqa: E731
            self.record("enqueue.bulk", "raw", bulk)
            self.record("enqueue.bulk_async", "raw", bulk)
        else:
            self.record(
                "enqueue.bulk", system.name, lambda: self.enqueue(system, system.enqueue_bulk, n)
            )
            self.record(
                "enqueue.bulk_async",
                system.name,
                lambda: self.enqueue(system, system.enqueue_bulk_async, n),
            )

    def w_drain(self, system: System) -> None:
        n = self.args.n
        self.record("drain.one_slot", system.name, lambda: self.drain(system, "one_slot", n=n))
        self.record("drain.solo", system.name, lambda: self.drain(system, "solo", n=n))
        self.record("drain.default", system.name, lambda: self.drain(system, "default", n=n))
        # Tasks that return a value, sent as most code sends them: plain delay(), a reply
        # requested, by a caller that has gone before they run.
        for mode in ("one_slot", "default"):
            self.record(
                f"drain.{mode}_value",
                system.name,
                lambda m=mode: self.drain(system, m, n=n, fill=system.fill_values),  # type: ignore[misc]
            )
        if system.name == "amqpq":  # events are on by default: the same without them
            quiet = lambda: self.drain(system, "without_events", n=n)  # noqa: E731
            self.record("drain.without_events", system.name, quiet)

    def w_store(self, system: System) -> None:
        # Tasks that return a value, drained by the default worker with each result store.
        n = self.args.n
        for store in ("none", "redis", "postgres"):
            self.record(
                f"store.{store}",
                system.name,
                lambda s=store: self.drain(  # type: ignore[misc]
                    system, f"store_{s}", n=n, fill=system.fill_results
                ),
            )

    def w_rpc(self, system: System) -> None:
        p50 = self.figure("rpc.p50", system.name)
        if p50.error is not None and p50.error.startswith("n/a"):
            return
        probe = self.probes[system.name]
        probe.purge(system.queue)
        worker = self.start_worker(system, "rpc" if system.name == "raw" else "default")
        try:
            probe.wait_consumer(system.queue, self.args.timeout, worker.alive)
            latencies = system.rpc(self.args.rpc_n)
        except NotSupported as exc:
            p50.error = self.figure("rpc.p99", system.name).error = f"n/a: {exc}"
            return
        except Exception as exc:
            p50.error = self.figure("rpc.p99", system.name).error = (
                f"error: {type(exc).__name__}: {exc}"
            )
            self.log(f"  {system.name} rpc: {p50.error}\n{worker.tail()}")
            return
        finally:
            worker.stop()
        self.record("rpc.p50", system.name, lambda: percentile(latencies, 50) * 1000)
        self.record("rpc.p99", system.name, lambda: percentile(latencies, 99) * 1000)

    def w_coldstart(self, system: System) -> None:
        probe = self.probes[system.name]
        probe.purge(system.queue)
        worker = self.start_worker(system, "default")
        try:
            consuming = probe.wait_consumer(system.queue, self.args.timeout, worker.alive)
            self.record("coldstart", system.name, lambda: consuming - worker.started)
            time.sleep(self.args.idle)
            self.record("rss", system.name, lambda: worker.tree_rss() / MB)
            self.record("pss", system.name, lambda: worker.tree_pss() / MB)
        except RuntimeError as exc:
            self.figure("coldstart", system.name).error = f"error: {exc}"
            self.log(f"  {system.name} coldstart: {exc}\n{worker.tail()}")
        finally:
            worker.stop()

    def w_blob(self, system: System) -> None:
        n = self.args.blob_n
        data = "x" * (MB - 512)  # ~1 MB once wrapped in each system's envelope
        self.record(
            "blob.enqueue",
            system.name,
            lambda: self.enqueue(system, lambda k: system.enqueue_one(k, data), n),
        )
        self.record(
            "blob.drain", system.name, lambda: self.drain(system, "one_slot", n=n, data=data)
        )

    def w_scaling(self, system: System) -> None:
        n = self.args.n
        for procs in SCALE:
            self.record(
                f"scale.{procs}",
                system.name,
                lambda p=procs: self.drain(system, "procs", p, n=n),  # type: ignore[misc]
            )

    def w_dashboard(self, system: System) -> None:
        if system.name != "amqpq":
            return
        import tempfile

        from benchmarks.dashboard_index import build, latency

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "history.db"
            built: dict[str, float] = {}

            def ingest() -> float:
                events, seconds = build(path, DASHBOARD_TASKS)
                built["done"] = 1
                return events / seconds

            self.record("dashboard.ingest", system.name, ingest)
            if not built:
                return
            figures = latency(path, 30)
            self.record("dashboard.tasks_p50", system.name, lambda: figures["state=FAILURE"][0])
            search = figures["search q=bad input 12"][0]
            self.record("dashboard.search_p50", system.name, lambda: search)

    def run(self) -> None:
        for workload in self.args.only:
            step = getattr(self, f"w_{workload}")
            for run in range(1, self.args.runs + 1):
                self.log(f"[{workload}] run {run}/{self.args.runs}")
                # Interleaved: each run visits every system, so noise hits them alike.
                for system in self.systems.values():
                    try:
                        step(system)
                    except Exception as exc:  # one broken step must not lose the others
                        self.log(f"  {system.name} {workload}: {type(exc).__name__}: {exc}")
                        for metric in METRICS[workload]:
                            fig = self.figure(metric.key, system.name)
                            fig.error = fig.error or f"error: {type(exc).__name__}: {exc}"

    # -- reports ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": self.args.command,
            "machine": _machine(),
            "n": self.args.n,
            "runs": self.args.runs,
            "rpc_n": self.args.rpc_n,
            "blob_n": self.args.blob_n,
            "skipped": self.skipped,
            "results": {
                key: {system: fig.to_json() for system, fig in per.items()}
                for key, per in self.results.items()
            },
            "targets": self.target_rows(),
        }

    def cell(self, key: str, system: str) -> str:
        if system in self.skipped:
            return "skipped"
        fig = self.results.get(key, {}).get(system)
        if fig is None:
            return "-"
        if not fig.samples:
            if fig.error and fig.error.startswith("n/a"):
                self.notes.setdefault(system, set()).add(fig.error[len("n/a: ") :])
                return "n/a"
            return fig.error or "-"
        median = _fmt(fig.median, fig.unit)
        if len(fig.samples) == 1:
            return median
        low, high = min(fig.samples), max(fig.samples)
        return f"{median} ({_num(low, fig.unit)}-{_num(high, fig.unit)})"

    def ratio(self, key: str, a: str, b: str) -> float | None:
        per = self.results.get(key, {})
        fa, fb = per.get(a), per.get(b)
        if fa is None or fb is None or not fa.samples or not fb.samples or fb.median == 0:
            return None
        return fa.median / fb.median

    def table(self) -> str:
        order = ("raw", "amqpq", "celery", "dramatiq", "celery-amqpq")
        systems = [s for s in order if s in self.args.systems]
        others = (
            [s for s in systems if s not in ("amqpq", "celery-amqpq")] if "amqpq" in systems else []
        )
        # Celery's producer on amqpq's worker, beside Celery's producer on Celery's worker.
        interop = "celery-amqpq" in systems and "celery" in systems
        head = ["workload", *systems, *[f"amqpq / {s}" for s in others]]
        head += ["celery-amqpq / celery"] if interop else []
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for workload in self.args.only:
            for metric in METRICS[workload]:
                if metric.key not in self.results:
                    continue
                arrow = "higher is better" if metric.higher_is_better else "lower is better"
                row = [f"{metric.label} ({metric.unit}, {arrow})"]
                row += [self.cell(metric.key, s) for s in systems]
                for other in others:
                    r = self.ratio(metric.key, "amqpq", other)
                    row.append("" if r is None else f"{r:.2f}x")
                if interop:
                    r = self.ratio(metric.key, "celery-amqpq", "celery")
                    row.append("" if r is None else f"{r:.2f}x")
                lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines)

    def target_rows(self) -> list[dict[str, Any]]:
        rows = []
        for label, key, num, den, bound, how in TARGETS:
            if key not in self.results:
                continue
            if den is None:
                fig = self.results[key].get(num)
                value = fig.median if fig is not None and fig.samples else None
            elif ":" in den:
                system, other_key = den.split(":", 1)
                fig, other = self.results[key].get(num), self.results.get(other_key, {}).get(system)
                value = (
                    fig.median / other.median
                    if fig is not None and other is not None and fig.samples and other.samples
                    else None
                )
            else:
                value = self.ratio(key, num, den)
            met = None if value is None else (value >= bound if how == "ge" else value <= bound)
            rows.append({"target": label, "value": value, "met": met, "absolute": den is None})
        return rows

    def targets_table(self) -> str:
        lines = ["| target | this run | met |", "|---|---|---|"]
        for row in self.target_rows():
            value = row["value"]
            shown = (
                "n/a" if value is None else (f"{value:.3g}" if row["absolute"] else f"{value:.2f}x")
            )
            met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
            lines.append(f"| {row['target']} | {shown} | {met} |")
        return "\n".join(lines)

    def report(self, markdown: bool) -> str:
        parts = []
        if markdown:
            parts.append(
                f"Command: `{self.args.command}`  \n"
                f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {_machine()}  \n"
                f"N = {self.args.n} tasks, {self.args.runs} runs each (median, min-max); "
                f"RPC: {self.args.rpc_n} sequential calls; 1 MB payloads: {self.args.blob_n} tasks."
            )
        parts.append(self.table())
        if self.notes:
            parts.append(
                "n/a: "
                + "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(self.notes.items()))
            )
        targets = self.targets_table()
        if targets.count("\n") > 1:
            parts.append("Targets (ratios of medians from this run):\n\n" + targets)
        if self.skipped:
            parts.append("Skipped: " + "; ".join(f"{k}: {v}" for k, v in self.skipped.items()))
        return "\n\n".join(parts)


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load:.2f} at the end"
    )


def _num(value: float, unit: str) -> str:
    if unit == "msg/s":
        return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    if unit in ("ms", "s"):
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:.1f}"


def _fmt(value: float, unit: str) -> str:
    return f"{_num(value, unit)} {unit}"


def _csv(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad:
        raise SystemExit(f"--{what}: unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="tasks per enqueue/drain run")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median, min-max)")
    parser.add_argument("--rpc-n", type=int, default=1_000, help="sequential RPC calls per run")
    parser.add_argument("--blob-n", type=int, default=100, help="1 MB tasks per run")
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"workloads, comma separated: {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma separated: {','.join(SYSTEMS)}"
    )
    parser.add_argument("--json", metavar="FILE", help="write every sample as JSON")
    parser.add_argument("--markdown", action="store_true", help="print the README table block")
    parser.add_argument("--idle", type=float, default=2.0, help="idle seconds before RSS")
    parser.add_argument("--timeout", type=float, default=300.0, help="per drain/start, seconds")
    parser.add_argument("--poll", type=float, default=0.01, help="queue depth poll interval, s")
    parser.add_argument(
        "--vhost-prefix",
        default=f"bench-{os.getpid()}-",
        help="each system's vhost is PREFIX + its name [default: bench-<pid>-, so that "
        "two runs never share a vhost]",
    )
    parser.add_argument("--keep-vhosts", action="store_true", help="leave bench-* vhosts behind")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.only = _csv(args.only, WORKLOADS, "only")
    args.systems = _csv(args.systems, tuple(SYSTEMS), "systems")
    args.command = os.environ.get("BENCH_COMMAND") or "python -m benchmarks " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    started = time.monotonic()
    try:
        bench.setup()
        bench.run()
    finally:
        bench.teardown()
        bench.log(f"done in {time.monotonic() - started:.0f}s")
        if args.json:
            Path(args.json).write_text(json.dumps(bench.to_json(), indent=2) + "\n")
        print(bench.report(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
