"""Dramatiq side of the benchmarks: ``dramatiq dramatiq_tasks`` (run from benchmarks/).

Broker URL from ``BENCH_DRAMATIQ_URL`` (the benchmark's own vhost), confirms on.
Dramatiq always acks after the actor ran (late ack); its prefetch comes from the
``dramatiq_queue_prefetch`` environment variable (default: 2 x threads).
Dramatiq has no result backend on RabbitMQ (Redis and Memcached only), so it has
no RPC figure.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

QUEUE = "default"
URL = os.environ.get("BENCH_DRAMATIQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

broker = RabbitmqBroker(url=URL, confirm_delivery=True)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench.noop", queue_name=QUEUE, max_retries=0)
def noop() -> None:
    return None


@dramatiq.actor(actor_name="bench.add", queue_name=QUEUE, max_retries=0)
def add(x: int, y: int) -> int:
    return x + y


@dramatiq.actor(actor_name="bench.blob", queue_name=QUEUE, max_retries=0)
def blob(data: str) -> int:
    return len(data)
