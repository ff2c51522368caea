"""What quorum delay levels cost on one node: countdown sends and their delivery, classic vs quorum.

Run from the repository root: ``.venv/bin/python -m benchmarks.delay_cost [--n 200]
[--runs 3] [--countdown 2]``. Each run makes a fresh vhost, applies a small topology
whose delay levels are ``classic`` or ``quorum`` (``infrastructure.delay_queue_type``),
sends N tasks one at a time with the sync producer (``send_task(..., countdown=C)``:
confirmed, mandatory, into the top delay level), then reads the work queue with a bare
pika consumer. It reports the apply time, the send latency (median, p95) and how late
each task reached the work queue after its eta (median, p95, max). Runs alternate the
two types so background noise hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import pika

from amqpq import App
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology_text
from amqpq.transport.declare import declare_topology_sync
from benchmarks.harness import amqp_url, delete_vhost, reset_vhost

TOPOLOGY = """
exchanges: [{{name: bench}}]
queues: [{{name: work, bindings: [{{exchange: bench, routing_key: work}}]}}]
routes: {{"*": {{exchange: bench, routing_key: work}}}}
infrastructure: {{delay_queue_type: {kind}}}
"""


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_once(kind: str, n: int, countdown: float) -> dict[str, float]:
    vhost = f"bench-delay-{kind}-{uuid.uuid4().hex[:6]}"
    reset_vhost(vhost)
    url = amqp_url(vhost)
    try:
        topology = load_topology_text(TOPOLOGY.format(kind=kind), "bench.yaml", {})
        settings = Settings(url=url)
        started = time.perf_counter()
        declare_topology_sync(settings, topology)
        apply_s = time.perf_counter() - started
        app = App("bench", settings=settings, topology=topology)
        sent: dict[str, float] = {}
        latencies: list[float] = []
        try:
            for _ in range(10):  # warm the connection and the channel
                app.send_task("bench.noop", ignore_result=True)
            _drain(url, 10)
            for i in range(n):
                task_id = f"t{i}"
                before = time.time()
                app.send_task(
                    "bench.noop", task_id=task_id, countdown=countdown, ignore_result=True
                )
                latencies.append(time.time() - before)
                sent[task_id] = before + countdown
        finally:
            app.close()
        arrived = _drain(url, n)
        late = [arrived[task_id] - due for task_id, due in sent.items()]
        return {
            "apply_s": apply_s,
            "send_p50_ms": statistics.median(latencies) * 1000,
            "send_p95_ms": _quantile(latencies, 0.95) * 1000,
            "late_p50_ms": statistics.median(late) * 1000,
            "late_p95_ms": _quantile(late, 0.95) * 1000,
            "late_max_ms": max(late) * 1000,
        }
    finally:
        delete_vhost(vhost)


def _drain(url: str, n: int) -> dict[str, float]:
    """Take n messages from the work queue: message id -> arrival time."""
    arrived: dict[str, float] = {}
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1000)
        for method, properties, _body in channel.consume("work", inactivity_timeout=60):
            if method is None:
                raise TimeoutError(f"{len(arrived)} of {n} arrived")
            arrived[str(properties.message_id)] = time.time()
            channel.basic_ack(method.delivery_tag)
            if len(arrived) == n:
                break
        channel.cancel()
    finally:
        connection.close()
    return arrived


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--countdown", type=float, default=2.0)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"classic": [], "quorum": []}
    for _ in range(args.runs):
        for kind in ("classic", "quorum"):
            figures = run_once(kind, args.n, args.countdown)
            results[kind].append(figures)
            print(kind, " ".join(f"{k}={v:.2f}" for k, v in figures.items()), flush=True)
    print(f"medians over {args.runs} runs, n={args.n}, countdown={args.countdown}s:")
    for kind, runs in results.items():
        medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"  {kind:8}", " ".join(f"{k}={v:.2f}" for k, v in medians.items()))


if __name__ == "__main__":
    main()
