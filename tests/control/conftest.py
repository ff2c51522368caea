"""Operations test fixtures: worker processes, the CLI's environment, an App on the vhost."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amqpq.app import App
from tests.support.processes import AmqpqProcess, Processes, amqpq_env

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "control_topology.yaml"


@pytest.fixture
def env(broker_url: str) -> dict[str, str]:
    environment = amqpq_env(broker_url, AMQPQ_TOPOLOGY=str(TOPOLOGY))
    environment.pop("AMQPQ_EVENTS", None)
    return environment


@pytest.fixture
def start_worker(env: dict[str, str], amqpq_processes: Processes) -> Callable[..., AmqpqProcess]:
    """Factory: ``start_worker("-c", "1")`` runs a worker of ``control_tasks`` on the vhost."""

    def start(*args: str, extra_env: dict[str, str] | None = None) -> AmqpqProcess:
        return amqpq_processes.start(
            "worker",
            *("-A", "control_tasks", "--workers", "1", *args),
            env={**env, **(extra_env or {})},
            cwd=HERE,
        )

    return start


@pytest.fixture
def app(broker_url: str) -> Iterator[App]:
    """A sender on the test's vhost (the test process's own App, not the worker's)."""
    sender = App("ct-sender", url=broker_url, topology=TOPOLOGY)
    yield sender
    sender.close()
