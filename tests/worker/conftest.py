"""Worker test fixtures: real ``amqpq worker`` processes and a bare aio-pika client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aio_pika
import pytest

from tests.support.aio_clients import TaskClient
from tests.support.processes import AmqpqProcess, Processes, amqpq_env

HERE = Path(__file__).resolve().parent


@pytest.fixture
def start_worker(broker_url: str, amqpq_processes: Processes) -> Callable[..., AmqpqProcess]:
    """Factory: ``start_worker("-Q", "work", "-c", "1")`` runs a worker on the test's vhost."""
    env = amqpq_env(broker_url)

    def start(*args: str, app: str = "worker_tasks") -> AmqpqProcess:
        return amqpq_processes.start("worker", "-A", app, *args, env=env, cwd=HERE)

    return start


@pytest.fixture
async def client(broker_url: str) -> AsyncIterator[TaskClient]:
    connection = await aio_pika.connect_robust(
        broker_url, client_properties={"connection_name": "amqpq tests worker client"}
    )
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    task_client = TaskClient(connection, channel)
    await task_client.start()
    try:
        yield task_client
    finally:
        await connection.close()
