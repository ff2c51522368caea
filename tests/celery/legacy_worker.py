"""The Celery worker side of the tests (``celery -A legacy_worker worker``): tasks still
served by Celery during a migration, called from amqpq on a ``protocol: celery`` route."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

app = Celery("legacy", broker=os.environ["CELERY_TEST_BROKER_URL"], backend="rpc://")
app.conf.update(
    task_queues=[
        # amqpq declares "legacy" (tests/celery/celery_topology.yaml) ...
        Queue("legacy", Exchange("celery", type="direct"), routing_key="legacy", no_declare=True),
        # ... and Celery declares its own "celery" queue, as it always has (the migration test).
        Queue("celery", Exchange("celery", type="direct"), routing_key="celery"),
    ],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="legacy.multiply")
def multiply(x: int, y: int) -> int:
    return x * y


@app.task(name="legacy.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="tasks.add")
def add(x: int, y: int) -> int:
    return x + y
