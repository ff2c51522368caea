"""Dashboard test fixtures: a default worker, the dashboard process, a sender, HTTP clients."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amqpq.app import App
from amqpq.settings import Settings
from amqpq.transport.declare import declare_topology
from tests.support.processes import AmqpqProcess, Processes, amqpq_env
from tests.support.waiting import eventually

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "dashboard_topology.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(broker_url: str) -> dict[str, str]:
    environment = amqpq_env(broker_url, AMQPQ_TOPOLOGY=str(TOPOLOGY))
    environment.pop("AMQPQ_EVENTS", None)  # the default worker: events on without a flag
    return environment


@pytest.fixture
def declared(broker_url: str) -> None:
    """The topology and its infrastructure (the events stream) on the test's vhost."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from amqpq.topology.loader import load_topology

    declare = declare_topology(Settings(url=broker_url), load_topology(TOPOLOGY))
    # A thread of its own: the browser tests' Playwright runs an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, declare).result()


@pytest.fixture
def start_worker(
    env: dict[str, str], amqpq_processes: Processes, declared: None
) -> Callable[..., AmqpqProcess]:
    """Factory: a default worker of ``dashboard_tasks`` (no flags but one process)."""

    def start(*args: str) -> AmqpqProcess:
        return amqpq_processes.start(
            "worker", "-A", "dashboard_tasks", "--workers", "1", *args, env=env, cwd=HERE
        ).started_blocking()

    return start


class Dashboard:
    """One ``amqpq dashboard`` process and a client on it."""

    def __init__(self, process: AmqpqProcess, port: int, auth: Any = None) -> None:
        self.process = process
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.base, auth=auth, timeout=15)

    def wait_ready(self) -> Dashboard:
        def healthy() -> bool:
            try:
                return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                assert self.process.process.poll() is None, self.process.log()
                return False

        eventually(healthy, timeout=30, what="the dashboard answers /healthz")
        return self

    def task(self, task_id: str, state: str | None = None, timeout: float = 20) -> dict[str, Any]:
        """The task once the dashboard has it (in ``state`` when given)."""

        def found() -> dict[str, Any] | None:
            response = self.client.get(f"/api/tasks/{task_id}")
            if response.status_code != 200:
                return None
            task: dict[str, Any] = response.json()
            return task if state is None or task["state"] == state else None

        return eventually(found, timeout=timeout, what=f"task {task_id} in state {state}")

    def stop(self) -> None:
        self.client.close()
        self.process.stop()


@pytest.fixture
def start_dashboard(
    env: dict[str, str], amqpq_processes: Processes, tmp_path: Path, declared: None
) -> Iterator[Callable[..., Dashboard]]:
    """Factory: ``start_dashboard("--read-only")`` on a free port, history in tmp_path
    (or in ``db``: a PostgreSQL URL)."""
    started: list[Dashboard] = []

    def start(
        *args: str, port: int | None = None, auth: Any = None, db: str | None = None
    ) -> Dashboard:
        port = port or free_port()
        process = amqpq_processes.start(
            "dashboard",
            "--port",
            str(port),
            "--db",
            db or str(tmp_path / "history.db"),
            *args,
            env=env,
            cwd=HERE,
        )
        dashboard = Dashboard(process, port, auth).wait_ready()
        started.append(dashboard)
        return dashboard

    yield start
    for dashboard in started:
        dashboard.client.close()


@pytest.fixture
def app(broker_url: str) -> Iterator[App]:
    """A sender on the test's vhost."""
    sender = App("dt-sender", url=broker_url, topology=TOPOLOGY)
    yield sender
    sender.close()
