"""Dramatiq side of the benchmarks: ``dramatiq dramatiq_tasks`` (run from benchmarks/).

Broker URL from ``BENCH_DRAMATIQ_URL`` (the benchmark's own vhost), confirms on.
Dramatiq always acks after the actor ran (late ack); its prefetch comes from the
``dramatiq_queue_prefetch`` environment variable (default: 2 x threads).
Dramatiq has no result backend on RabbitMQ (Redis and Memcached only), so it has
no RPC figure.

An actor that returns a value without the Results middleware makes Dramatiq's worker
log a warning for every message ("returned a value that is not None ... the value has
been discarded"). The rows of tasks that return a value measure the task, not that
log line: its logger is turned down to ERROR here, as a user who keeps no results
would do.
"""

from __future__ import annotations

import logging
import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

QUEUE = "default"
URL = os.environ.get("BENCH_DRAMATIQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

broker = RabbitmqBroker(url=URL, confirm_delivery=True)
dramatiq.set_broker(broker)
logging.getLogger("dramatiq.worker.WorkerThread").setLevel(logging.ERROR)


@dramatiq.actor(actor_name="bench.noop", queue_name=QUEUE, max_retries=0)
def noop() -> None:
    return None


@dramatiq.actor(actor_name="bench.add", queue_name=QUEUE, max_retries=0)
def add(x: int, y: int) -> int:
    return x + y


@dramatiq.actor(actor_name="bench.blob", queue_name=QUEUE, max_retries=0)
def blob(data: str) -> int:
    return len(data)
