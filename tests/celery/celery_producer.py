"""A Celery 5 app as a Celery shop's producer code has it: broker = the test's vhost,
results over ``rpc://``, the tasks it calls defined by name only (their code lives on
the workers)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue


def celery_app(broker_url: str, **conf: Any) -> Celery:
    """``conf`` overrides; ``task_queues=None`` lets Celery declare its default queue."""
    app = Celery("shop", broker=broker_url, backend="rpc://", set_as_current=False)
    settings: dict[str, Any] = {
        "task_default_queue": "celery",
        # amqpq declares the queue (with its dead-lettering arguments): Celery must not
        # re-declare it with other arguments (PRECONDITION_FAILED). docs/celery.md.
        "task_queues": [
            Queue(
                "celery", Exchange("celery", type="direct"), routing_key="celery", no_declare=True
            )
        ],
        "broker_connection_retry_on_startup": True,
        "result_expires": None,
    }
    app.conf.update({**settings, **conf})

    @app.task(name="tasks.add", shared=False)  # one app of many in the test process
    def add(x: int, y: int) -> int:  # sent with .delay(); runs on an amqpq worker
        raise NotImplementedError

    return app
