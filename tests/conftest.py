"""Shared fixtures: every integration test gets its own vhost on the real broker."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from amqpq.settings import Settings

BROKER_HOST = os.environ.get("AMQPQ_TEST_HOST", "127.0.0.1")
MANAGEMENT = f"http://{BROKER_HOST}:15672/api"
AUTH = ("guest", "guest")


def _management() -> httpx.Client:
    return httpx.Client(base_url=MANAGEMENT, auth=AUTH, timeout=10.0)


@pytest.fixture(scope="session")
def management() -> Iterator[httpx.Client]:
    """A plain HTTP client on the management API (test-side, independent of amqpq's own)."""
    with _management() as client:
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
def make_vhost(management: httpx.Client, request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Factory: a fresh vhost named after the test, deleted afterwards."""
    created: list[str] = []

    def make() -> str:
        base = request.node.name.replace("[", "-").replace("]", "")[:60]
        name = f"amqpq-test-{base}-{uuid.uuid4().hex[:6]}"
        quoted = quote(name, safe="")
        management.put(f"/vhosts/{quoted}").raise_for_status()
        management.put(
            f"/permissions/{quoted}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        created.append(name)
        return name

    yield make
    for name in created:
        management.delete(f"/vhosts/{quote(name, safe='')}")


@pytest.fixture
def vhost(make_vhost: Callable[[], str]) -> str:
    return make_vhost()


@pytest.fixture
def broker_url(vhost: str) -> str:
    return f"amqp://guest:guest@{BROKER_HOST}:5672/{quote(vhost, safe='')}"


@pytest.fixture
def settings(broker_url: str) -> Settings:
    return Settings(url=broker_url)
