"""``self.retry()`` raises by itself under the test broker too (the worker's own handler)."""

from __future__ import annotations

import pytest

from amqpq.app import App
from amqpq.registry import TaskContext
from amqpq.testing import TestBroker


@pytest.mark.parametrize("written", ["self.retry(...)", "raise self.retry(...)"])
def test_retry_stops_the_task_and_runs_it_again_with_or_without_raise(
    written: str, app: App, broker: TestBroker
) -> None:
    went_on: list[int] = []

    @app.task(name="tests.retrying", bind=True, max_retries=2)
    def retrying(self: TaskContext) -> int:
        if self.request.retries == 0:
            if written.startswith("raise"):
                raise self.retry(countdown=1)
            self.retry(countdown=1)  # no raise, as Celery users write it
            went_on.append(self.request.retries)
        return self.request.retries

    result = retrying.delay()
    broker.run_all()
    broker.advance(1.1)
    broker.run_all()

    assert result.get() == 1
    assert went_on == []
    assert broker.stats.retried == 1
