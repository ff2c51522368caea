"""Celery with its Redis result backend, for the workflow rows (``benchmarks/workflows.py``):
Celery's chords need a backend that supports them (``rpc://`` does not), and Redis is
the fast one. Run from benchmarks/ as ``celery -A celery_redis_tasks worker``.

Broker URL from ``BENCH_CELERY_URL`` (the benchmark's own vhost), results in
``BENCH_CELERY_REDIS`` (default ``redis://127.0.0.1:6379/0``), publisher confirms on.
Results expire after 5 minutes, so the benchmark leaves nothing behind in Redis.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "celery"

app = Celery(
    "bench",
    broker=os.environ.get("BENCH_CELERY_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=300,
)


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="bench.echo")
def echo(i: int) -> int:
    return i


@app.task(name="bench.tsum")
def tsum(numbers: list[int]) -> int:
    return sum(numbers)
