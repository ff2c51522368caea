"""Worker test fixtures: real ``amqpq worker`` processes and a bare aio-pika client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aio_pika
import pytest
from worker_helpers import TaskClient, WorkerProcess


@pytest.fixture
def start_worker(broker_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``start_worker("-Q", "work", "-c", "1")`` runs a worker on the test's vhost."""
    workers: list[WorkerProcess] = []
    env = {
        **os.environ,
        "AMQPQ_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("AMQPQ_TOPOLOGY", None)

    def start(*args: str, app: str = "worker_tasks") -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(["-A", app, *args], env, log_path)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


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
