"""Celery interoperability fixtures: a real Celery 5 app on the test's vhost, amqpq
workers and real ``celery worker`` subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from celery import Celery

from tests.celery.celery_producer import celery_app
from tests.support.processes import AmqpqProcess, Processes, amqpq_env

HERE = Path(__file__).resolve().parent


@pytest.fixture
def start_worker(broker_url: str, amqpq_processes: Processes) -> Callable[..., AmqpqProcess]:
    """Factory: an ``amqpq worker -A interop_tasks`` on the test's vhost."""
    env = amqpq_env(broker_url)

    def start(*args: str) -> AmqpqProcess:
        return amqpq_processes.start("worker", "-A", "interop_tasks", *args, env=env, cwd=HERE)

    return start


@pytest.fixture
def make_celery(broker_url: str) -> Iterator[Callable[..., Celery]]:
    """Factory: a Celery producer app on the test's vhost (``make_celery(task_protocol=1)``)."""
    made: list[Celery] = []

    def make(**conf: Any) -> Celery:
        app = celery_app(broker_url, **conf)
        made.append(app)
        return app

    yield make
    for app in made:
        close_celery(app)


def close_celery(app: Celery) -> None:
    """Close a Celery app and the rpc:// result consumer's connection, which
    ``app.close()`` leaves open."""
    consumer = app.backend.result_consumer
    if getattr(consumer, "_connection", None) is not None:
        consumer.stop()
    app.close()


@pytest.fixture
def shop(make_celery: Callable[..., Celery]) -> Celery:
    return make_celery()


@pytest.fixture
async def amqp(broker_url: str) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    connection = await aio_pika.connect_robust(
        broker_url, client_properties={"connection_name": "amqpq tests celery client"}
    )
    try:
        yield connection
    finally:
        await connection.close()


class CeleryWorker:
    """A real ``celery worker`` subprocess (solo pool), stopped by PID."""

    def __init__(self, broker_url: str, log_path: Path, queues: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {**os.environ, "CELERY_TEST_BROKER_URL": broker_url, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "legacy_worker",
                "worker",
                "-P",
                "solo",
                "-Q",
                queues,
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
                "-n",
                f"legacy{os.getpid()}@%h",
            ],
            cwd=HERE,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


@pytest.fixture
def celery_worker(broker_url: str, tmp_path: Path) -> Iterator[Callable[[str], CeleryWorker]]:
    started: list[CeleryWorker] = []

    def start(queues: str) -> CeleryWorker:
        worker = CeleryWorker(broker_url, tmp_path / f"celery-worker-{len(started)}.log", queues)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
