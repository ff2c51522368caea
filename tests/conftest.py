"""Shared fixtures: every integration test gets its own vhost on the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from amqpq.settings import Settings
from tests.support.broker import MANAGEMENT, amqp_url, create_vhost, delete_vhost, management_client
from tests.support.processes import Processes


@pytest.fixture(scope="session")
def management() -> Iterator[httpx.Client]:
    """A plain HTTP client on the management API (test-side, independent of amqpq's own)."""
    with management_client() as client:
        try:
            client.get("/overview").raise_for_status()
        except httpx.HTTPError as exc:
            pytest.exit(
                f"RabbitMQ management API not reachable at {MANAGEMENT}: {exc}. "
                "Run scripts/broker.sh (the README's test command does).",
                returncode=3,
            )
        yield client


@pytest.fixture
def make_vhost(
    management: httpx.Client, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    """Factory: a fresh vhost named after the test, deleted afterwards
    (``make(default_queue_type="quorum")``: a vhost that defaults to quorum queues)."""
    created: list[str] = []

    def make(default_queue_type: str | None = None) -> str:
        base = request.node.name.replace("[", "-").replace("]", "")[:60]
        name = f"amqpq-test-{base}-{uuid.uuid4().hex[:6]}"
        create_vhost(management, name, default_queue_type=default_queue_type)
        created.append(name)
        return name

    yield make
    for name in created:
        delete_vhost(management, name)


@pytest.fixture
def vhost(make_vhost: Callable[..., str]) -> str:
    return make_vhost()


@pytest.fixture
def broker_url(vhost: str) -> str:
    return amqp_url(vhost)


@pytest.fixture
def settings(broker_url: str) -> Settings:
    return Settings(url=broker_url)


@pytest.fixture
def amqpq_processes(tmp_path: Path) -> Iterator[Processes]:
    """The test's ``amqpq`` subprocesses (logs in tmp_path), every one stopped at its end."""
    processes = Processes(tmp_path)
    yield processes
    processes.stop_all()
