"""Beat test fixtures: real ``amqpq beat`` processes on the test's vhost."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.beat.beat_helpers import HERE, TOPOLOGY
from tests.support.processes import AmqpqProcess, Processes, amqpq_env


@pytest.fixture
def start_beat(broker_url: str, amqpq_processes: Processes) -> Callable[..., AmqpqProcess]:
    """Factory: ``start_beat()`` runs ``amqpq beat -f beat_topology.yaml`` on the test's vhost."""
    env = amqpq_env(broker_url)

    def start(*args: str) -> AmqpqProcess:
        return amqpq_processes.start("beat", "-f", str(TOPOLOGY), *args, env=env, cwd=HERE)

    return start
