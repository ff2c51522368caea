"""amqpq side of the benchmarks: ``amqpq worker -A bench_tasks`` (run from benchmarks/).

One durable classic queue, the type Celery and Dramatiq use by default, so every
system pays the same broker cost. The broker URL (with the benchmark's own vhost)
comes from ``AMQPQ_URL``. Task names are explicit so that importing this module as
``benchmarks.bench_tasks`` (the harness) or ``bench_tasks`` (the worker) agrees.
"""

from __future__ import annotations

from amqpq.app import App
from amqpq.topology import Topology

QUEUE = "bench"

TOPOLOGY = Topology.model_validate(
    {
        "exchanges": [{"name": "bench", "type": "direct"}],
        "queues": [
            {
                "name": QUEUE,
                "type": "classic",
                "bindings": [{"exchange": "bench", "routing_key": QUEUE}],
            }
        ],
        "routes": {"*": {"exchange": "bench", "routing_key": QUEUE}},
    }
)

app = App("bench_tasks", topology=TOPOLOGY)


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    return None


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="bench.blob", ignore_result=True)
def blob(data: str) -> int:
    return len(data)


@app.task(name="bench.echo")
def echo(i: int) -> int:
    return i


@app.task(name="bench.tsum")
def tsum(numbers: list[int]) -> int:
    return sum(numbers)
