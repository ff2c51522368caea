"""Operations test fixtures: worker processes, the CLI's environment, an App on the vhost."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from control_helpers import HERE, WorkerProcess

from amqpq.app import App


@pytest.fixture
def env(broker_url: str) -> dict[str, str]:
    environment = {**os.environ, "AMQPQ_URL": broker_url, "PYTHONUNBUFFERED": "1"}
    environment.pop("AMQPQ_TOPOLOGY", None)
    environment.pop("AMQPQ_EVENTS", None)
    environment["AMQPQ_TOPOLOGY"] = str(HERE / "control_topology.yaml")
    return environment


@pytest.fixture
def start_worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``start_worker("-c", "1")`` runs a worker of ``control_tasks`` on the vhost."""
    workers: list[WorkerProcess] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(
            ["-A", "control_tasks", "--workers", "1", *args], {**env, **(extra_env or {})}, log_path
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def app(broker_url: str) -> Iterator[App]:
    """A sender on the test's vhost (the test process's own App, not the worker's)."""
    sender = App("ct-sender", url=broker_url, topology=HERE / "control_topology.yaml")
    yield sender
    sender.close()
