"""Delay, retry and dead-letter tests: the full topology (delay levels, DLQs) per test vhost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from amqpq.app import App
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.topology.models import Topology
from amqpq.transport.declare import declare_topology_sync
from tests.delays.delay_helpers import HERE, TOPOLOGY_FILE
from tests.support.aio_clients import Replies, named_replies
from tests.support.processes import AmqpqProcess, Processes, amqpq_env


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
    return await named_replies(connection)


@pytest.fixture
def start_worker(
    broker_url: str, declared: Topology, amqpq_processes: Processes
) -> Callable[..., AmqpqProcess]:
    """Factory: ``start_worker("-Q", "work", "-c", "1")``; killed (with its children) afterwards."""
    env = amqpq_env(broker_url)

    def start(*args: str) -> AmqpqProcess:
        return amqpq_processes.start(
            "worker", "-A", "delay_tasks", *args, env=env, cwd=HERE, own_session=True
        )

    return start
