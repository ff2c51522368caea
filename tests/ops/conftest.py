"""Ops test fixtures: the declared test topology, a plain pika client, the CLI, a worker."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pika
import pytest

from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.transport.declare import declare_topology_sync
from tests.ops.ops_helpers import HERE, TOPOLOGY
from tests.support.cli import Cli
from tests.support.pika_clients import PlainClient
from tests.support.processes import Processes, amqpq_env


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AMQPQ_URL", "AMQPQ_TOPOLOGY", "AMQPQ_MANAGEMENT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def declared(settings: Settings) -> Settings:
    """The test topology (and amqpq's infrastructure) declared in the test's vhost."""
    declare_topology_sync(settings, load_topology(TOPOLOGY))
    return settings


@pytest.fixture
def plain(
    declared: Settings, broker_url: str, request: pytest.FixtureRequest
) -> Iterator[PlainClient]:
    parameters = pika.URLParameters(broker_url)
    parameters.client_properties = {"connection_name": f"amqpq tests {request.node.name}"}
    connection = pika.BlockingConnection(parameters)
    try:
        yield PlainClient(connection)
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def cli(broker_url: str) -> Cli:
    """``amqpq ...`` in-process against the test's vhost, with the test topology unless told otherwise."""
    return Cli({"AMQPQ_URL": broker_url, "AMQPQ_TOPOLOGY": str(TOPOLOGY)})


@pytest.fixture
def start_worker(
    broker_url: str, amqpq_processes: Processes
) -> Callable[..., subprocess.Popen[bytes]]:
    """Factory: a real ``amqpq worker -A ops_tasks``, started, on the test's vhost; killed afterwards."""
    env = amqpq_env(broker_url)

    def start(*args: str) -> subprocess.Popen[bytes]:
        worker = amqpq_processes.start(
            "worker", "-A", "ops_tasks", "-f", str(TOPOLOGY), *args, env=env, cwd=HERE
        )
        return worker.started_blocking().process

    return start
