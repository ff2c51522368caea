"""docs/celery.md's migration of one queue, and its rollback, with a real Celery worker,
a real amqpq worker and an unchanged Celery producer on the queue Celery declares."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery

from tests.celery.conftest import CeleryWorker
from tests.support.processes import Processes, amqpq_env
from tests.support.waiting import eventually

HERE = Path(__file__).resolve().parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def ran_on_celery(worker: CeleryWorker, ids: list[str]) -> bool:
    """Whether the Celery worker logged each task as succeeded (it logs after replying)."""
    return bool(
        eventually(
            lambda: all(f"tasks.add[{task_id}] succeeded" in worker.log() for task_id in ids),
            what="the Celery worker's log",
        )
    )


def ready(worker: CeleryWorker, count: int = 1) -> None:
    eventually(lambda: worker.log().count(" ready.") >= count, timeout=60, what="celery worker")


def test_one_queue_moves_from_celery_workers_to_amqpq_workers_and_back(
    broker_url: str,
    amqpq_processes: Processes,
    make_celery: Callable[..., Celery],
    celery_worker: Callable[[str], CeleryWorker],
) -> None:
    # The Celery producer declares its queue itself: nothing in it changes below.
    producer = make_celery(task_queues=None)

    def run(count: int) -> list[str]:
        results = [producer.send_task("tasks.add", args=(i, 1)) for i in range(count)]
        assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(count)]
        return [r.id for r in results]

    # Before: Celery's worker serves "celery".
    celery = celery_worker("celery")
    ready(celery)
    before = run(3)
    assert ran_on_celery(celery, before)

    # Step 3: an amqpq worker beside it (the file declares the queue as Celery does).
    amqpq = amqpq_processes.start(
        "worker", "-A", "adopted_tasks", "-Q", "celery", env=amqpq_env(broker_url), cwd=HERE
    )
    amqpq.started_blocking()
    both = run(20)

    # Step 4: Celery's worker leaves the queue; amqpq's runs everything.
    celery.stop()
    after = run(5)

    # Rollback: Celery's worker back, the amqpq worker stopped with SIGTERM.
    again = celery_worker("celery")
    ready(again)
    amqpq.signal(signal.SIGTERM)
    assert amqpq.process.wait(60) == 0
    rolled_back = run(3)
    assert ran_on_celery(again, rolled_back)

    # Each task ran once, on one side: the Celery worker's log names its share of the
    # 20 sent while both served the queue, the amqpq workers counted the rest and the 5
    # sent after Celery's left.
    on_celery = [i for i in both if f"tasks.add[{i}] succeeded" in celery.log()]
    assert not any(f"tasks.add[{i}]" in celery.log() for i in after)
    assert amqpq_succeeded(amqpq.log()) == len(both) - len(on_celery) + len(after)


def amqpq_succeeded(log: str) -> int:
    """Tasks the amqpq worker processes ran, from their ``worker stopped stats=`` lines."""
    return sum(int(n) for n in re.findall(r"worker stopped stats=\{[^}]*'succeeded': (\d+)", log))
