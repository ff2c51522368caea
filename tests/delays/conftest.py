"""Delay, retry and dead-letter tests: the full topology (delay levels, DLQs) per test vhost."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from delay_helpers import TOPOLOGY_FILE, Replies, WorkerProcess

from amqpq.app import App
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.topology.models import Topology
from amqpq.transport.declare import declare_topology_sync


@pytest.fixture
def topology() -> Topology:
    return load_topology(TOPOLOGY_FILE)


@pytest.fixture
def declared(settings: Settings, topology: Topology) -> Topology:
    """Everything ``amqpq topology apply`` declares: the file, the DLQs, the 30 delay levels."""
    declare_topology_sync(settings, topology)
    return topology


@pytest.fixture
async def app(settings: Settings, declared: Topology) -> AsyncIterator[App]:
    """A producer-side App on the test vhost (tasks are sent by name)."""
    app = App("dt-tests", settings=settings, topology=declared)
    yield app
    await app.aclose()
    app.close()


@pytest.fixture
async def connection(
    broker_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(
        broker_url, client_properties={"connection_name": f"amqpq tests {request.node.name}"}
    )
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def replies(connection: AbstractRobustConnection) -> Replies:
    return await Replies(connection).start()


@pytest.fixture
def start_worker(
    broker_url: str, declared: Topology, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``start_worker("-Q", "work", "-c", "1")``; killed (with its children) afterwards."""
    workers: list[WorkerProcess] = []
    env = {**os.environ, "AMQPQ_URL": broker_url, "PYTHONUNBUFFERED": "1"}
    env.pop("AMQPQ_TOPOLOGY", None)

    def start(*args: str) -> WorkerProcess:
        worker = WorkerProcess(list(args), env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
