"""The worker: consume queues, run tasks in a pool, late acks, retries, dead letters.

See docs/workers.md. ``amqpq worker -A module[:app]`` is the command line.

Where things are:

- ``main``: the worker process's lifecycle (connect, declare, consume, drain, stop);
  ``options``: what it is asked to do; ``supervisor``: ``--workers N``;
- ``factory``: builds the pool and the message handler (shared with ``amqpq.testing``);
- ``consumer``: one delivery, start to finish, in the order ``admission`` (may it run?),
  ``pools`` (run it), ``outcomes`` (publish, then ack); ``fanout`` tells stats,
  observers, hooks and logs about each state change;
- ``deadletter``, ``redelivery``, ``ratelimit``: the policies those steps use;
- ``execution``, ``hooks``, ``limits``: running one task where it runs; ``child``: a
  process of the ``processes`` pool; ``loader``: finding the App;
- ``operations``: revocations, control commands, events, metrics and inspect;
  ``consumer_timeout``: the broker setting long tasks must stay under.
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
