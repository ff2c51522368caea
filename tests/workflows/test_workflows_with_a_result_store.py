"""Workflows when a result store is configured: the join stays on RabbitMQ, the caller
still gets its replies, and every task of the workflow, the ones a failure leaves
without a run included, is readable by id from the store (docs/results.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from amqpq import ChordError, RemoteTaskError, chain, chord
from amqpq.settings import Settings
from tests.support.processes import Processes, amqpq_env
from tests.support.stores import postgres_store_url, redis_store_url
from tests.workflows.conftest import HERE
from tests.workflows.flows import Flows

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(params=["redis", "postgres"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    made = redis_store_url() if request.param == "redis" else postgres_store_url()
    with made as url:
        yield url


def test_workflows_are_stored_by_id(
    store_url: str, broker_url: str, amqpq_processes: Processes, traces: Path
) -> None:
    env = amqpq_env(broker_url, FLOWS_DIR=str(traces), AMQPQ_RESULT_BACKEND=store_url)
    amqpq_processes.start("worker", "-A", "flows", "-c", "4", env=env, cwd=HERE).started_blocking()
    flows = Flows(Settings(url=broker_url), result_backend=store_url)
    try:
        c = chord((flows.add.s(i, i) for i in range(10)), flows.tsum.s()).apply_async()
        r = chain(flows.add.s(2, 2), flows.add.s(4), flows.mul.s(10)).apply_async()
        assert c.get(timeout=30) == 90
        assert r.get(timeout=30) == 80
        assert flows.app.AsyncResult(c.id).get(timeout=30) == 90
        assert flows.app.AsyncResult(r.parent.id).get(timeout=30) == 8

        broken = chord([flows.noop.s(0), flows.fail.s(1)], flows.tsum.s()).apply_async()
        stopped = chain(flows.fail.s(1), flows.add.s(1)).apply_async()
        with pytest.raises(ChordError):
            broken.get(timeout=30)
        with pytest.raises(ChordError, match="member 1"):
            flows.app.AsyncResult(broken.id).get(timeout=30)
        with pytest.raises(RemoteTaskError, match="boom"):
            flows.app.AsyncResult(stopped.id).get(timeout=30)
    finally:
        flows.app.close()
