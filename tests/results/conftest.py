"""Result store fixtures: one URL per store kind, each test under its own prefix or table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amqpq.topology.models import Topology
from tests.support.stores import postgres_store_url, redis_store_url
from tests.testing.conftest import TOPOLOGY


@pytest.fixture
def topology() -> Topology:
    """The amqpq.testing tests' topology, for the App-level tests here."""
    return Topology.model_validate(TOPOLOGY)


@pytest.fixture(params=["redis", "postgres", "memory"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every store kind in turn (the contract suite)."""
    if request.param == "redis":
        with redis_store_url() as url:
            yield url
    elif request.param == "postgres":
        with postgres_store_url() as url:
            yield url
    else:
        yield "memory://"


@pytest.fixture(params=["redis", "postgres"])
def shared_store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The stores other processes can read (cross-process tests)."""
    if request.param == "redis":
        with redis_store_url() as url:
            yield url
    else:
        with postgres_store_url() as url:
            yield url
