"""``self.retry()`` raises by itself under the test broker too (the worker's own handler)."""

from __future__ import annotations

from amqpq.app import App
from amqpq.registry import TaskContext
from amqpq.testing import TestBroker


def test_a_bare_retry_stops_the_task_and_runs_it_again(app: App, broker: TestBroker) -> None:
    went_on: list[int] = []

    @app.task(name="tests.bare_retry", bind=True, max_retries=2)
    def bare_retry(self: TaskContext) -> int:
        if self.request.retries == 0:
            self.retry(countdown=1)  # no raise, as Celery users write it
            went_on.append(self.request.retries)
        return self.request.retries

    result = bare_retry.delay()
    broker.run_all()
    broker.advance(1.1)
    broker.run_all()

    assert result.get() == 1
    assert went_on == []
    assert broker.stats.retried == 1


def test_raise_self_retry_still_works(app: App, broker: TestBroker) -> None:
    @app.task(name="tests.raised_retry", bind=True, max_retries=2)
    def raised_retry(self: TaskContext) -> int:
        if self.request.retries == 0:
            raise self.retry(countdown=1)
        return self.request.retries

    result = raised_retry.delay()
    broker.run_all()
    broker.advance(1.1)
    broker.run_all()

    assert result.get() == 1
