"""The worker: consume queues, run tasks in a pool, late acks, retries, dead letters.

See docs/workers.md. ``amqpq worker -A module[:app]`` is the command line.
"""

from __future__ import annotations

from amqpq.worker.limits import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from amqpq.worker.loader import load_app
from amqpq.worker.main import (
    DEFAULT_MAX_BODY_SIZE,
    Worker,
    WorkerOptions,
    default_concurrency,
    resolve_queues,
)
from amqpq.worker.stats import WorkerStats

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "SoftTimeLimitExceeded",
    "TimeLimitExceeded",
    "Worker",
    "WorkerLostError",
    "WorkerOptions",
    "WorkerStats",
    "default_concurrency",
    "load_app",
    "resolve_queues",
]
