"""Celery side of the benchmarks: ``celery -A celery_tasks worker`` (run from benchmarks/).

Broker URL from ``BENCH_CELERY_URL`` (the benchmark's own vhost), results over
``rpc://`` (``BENCH_CELERY_BACKEND``, e.g. a Redis URL, for the result-store rows), publisher confirms on. ``BENCH_ACKS_LATE=1`` turns on late acks (the
one-slot and scaling workers); the default worker keeps Celery's defaults.
``BENCH_CELERY_CONFIRM=0`` is only for pre-filling queues, which is not timed.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "celery"

app = Celery(
    "bench",
    broker=os.environ.get("BENCH_CELERY_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("BENCH_CELERY_BACKEND", "rpc://"),
)
app.conf.update(
    broker_transport_options={
        "confirm_publish": os.environ.get("BENCH_CELERY_CONFIRM", "1") == "1"
    },
    broker_connection_retry_on_startup=True,
    task_acks_late=os.environ.get("BENCH_ACKS_LATE") == "1",
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=600,  # the result-store rows leave nothing behind for long
)


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    return None


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="bench.blob", ignore_result=True)
def blob(data: str) -> int:
    return len(data)
