"""A plain script: send a batch of tasks, wait for the results, print them.

Start a worker first (from this directory; it declares the topology of
``amqpq.yaml`` on start)::

    amqpq worker -A web_tasks -Q default,high_priority -c 4

then, from anywhere::

    python examples/script.py

The script uses the synchronous producer (pika), as a Celery user's script
would: ``delay``, a bulk send with ``producer.map`` / ``producer.send_many``
(many publishes, confirms in flight together), and ``apply_async`` with a
countdown, which waits on the broker's delay levels, not in a worker.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_tasks import add, app, slow_square

from amqpq import TaskCall


def main() -> int:
    started = time.monotonic()
    try:
        # One task, default options: Celery's add.delay(3, 4).
        single = add.delay(3, 4)

        # A bulk send: one call per item, all published before any result is awaited.
        squares = app.producer.map(slow_square, range(1, 11))

        # A mixed batch: TaskCall names the task, its arguments and its send options.
        batch = app.producer.send_many(
            [
                TaskCall("tasks.add", (10, 20)),
                TaskCall(
                    "tasks.send_email",
                    ("ada@example.com", "Your report is ready"),
                    options={"priority": 5},
                ),
            ]
        )

        # Later: the broker holds it for two seconds, then routes it as usual.
        later = add.apply_async(args=(100, 200), countdown=2)

        print(f"sent {2 + len(squares) + len(batch)} tasks in {time.monotonic() - started:.2f}s")
        print(f"add(3, 4)             = {single.get(timeout=30)}")
        print(f"squares 1..10         = {[r.get(timeout=30) for r in squares]}")
        print(f"add(10, 20)           = {batch[0].get(timeout=30)}")
        print(f"send_email(...)       = {batch[1].get(timeout=30)}")
        print(f"add(100, 200) +2s     = {later.get(timeout=30)}")
        print(f"all results in {time.monotonic() - started:.2f}s")
        return 0
    finally:
        app.close()  # the producer's connection


if __name__ == "__main__":
    sys.exit(main())
