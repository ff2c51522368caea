"""Ops test fixtures: the declared test topology, a plain pika client, the CLI, a worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
from ops_helpers import HERE, TOPOLOGY, Cli, PlainClient

from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.transport.declare import declare_topology_sync


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
    return Cli(broker_url)


@pytest.fixture
def start_worker(
    broker_url: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: a real ``amqpq worker -A ops_tasks`` on the test's vhost; killed afterwards."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    env = {**os.environ, "AMQPQ_URL": broker_url, "PYTHONUNBUFFERED": "1"}
    env.pop("AMQPQ_TOPOLOGY", None)

    def start(*args: str) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"worker-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "amqpq",
                    "worker",
                    "-A",
                    "ops_tasks",
                    "-f",
                    str(TOPOLOGY),
                    *args,
                ],
                cwd=HERE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log_path))
        deadline = time.monotonic() + 30
        while "worker started" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        return process

    yield start
    for process, _ in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
