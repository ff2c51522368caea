"""A Celery app's configuration as a Celery shop has it, for ``amqpq topology
import-celery shop_config:app`` (never connects: importing it only builds the app)."""

from __future__ import annotations

import re
from datetime import timedelta

from celery import Celery
from celery.schedules import crontab
from kombu import Exchange, Queue

app = Celery("shop", broker="amqp://guest:guest@127.0.0.1:5672/shop", backend="rpc://")
app.conf.update(
    timezone="Europe/Paris",
    task_default_queue="default",
    task_queues=[
        Queue("default", Exchange("default"), routing_key="default"),
        Queue("billing", Exchange("shop", type="topic"), routing_key="billing.#", max_priority=10),
        Queue("reports", Exchange("shop", type="topic"), routing_key="reports.#", message_ttl=60),
        Queue("plain"),  # Celery fills in its default exchange and routing key
    ],
    task_routes=[
        {
            "billing.*": {"queue": "billing"},
            "reports.daily": {"exchange": "shop", "routing_key": "reports.daily"},
            "mail.send": "mail",
            re.compile(r"legacy\..*"): {"queue": "default"},
        }
    ],
    beat_schedule={
        "nightly-invoices": {
            "task": "billing.invoice_all",
            "schedule": crontab(minute="30", hour="2"),
            "args": (True,),
        },
        "heartbeat": {"task": "reports.ping", "schedule": timedelta(seconds=30)},
    },
)
