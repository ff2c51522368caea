"""Workflow tests on RabbitMQ: ``amqpq worker -A flows`` subprocesses on the test's vhost,
and the same tasks in the test process to send with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amqpq.settings import Settings
from tests.support.processes import AmqpqProcess, Processes, amqpq_env
from tests.workflows.flows import Flows

HERE = Path(__file__).resolve().parent


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    """Where the tasks trace what they ran (``$FLOWS_DIR``)."""
    folder = tmp_path / "traces"
    folder.mkdir()
    return folder


@pytest.fixture
def start_worker(
    broker_url: str, amqpq_processes: Processes, traces: Path
) -> Callable[..., AmqpqProcess]:
    """Factory: ``start_worker("-c", "4")`` runs ``amqpq worker -A flows`` on the vhost."""
    env = amqpq_env(broker_url, FLOWS_DIR=str(traces))

    def start(*args: str) -> AmqpqProcess:
        return amqpq_processes.start("worker", "-A", "flows", *args, env=env, cwd=HERE)

    return start


@pytest.fixture
def flows(broker_url: str) -> Iterator[Flows]:
    made = Flows(Settings(url=broker_url))
    yield made
    made.app.close()
