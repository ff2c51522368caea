"""Producer tests: a small declared topology per test vhost and a fake worker in bare pika.

The fake worker answers exactly as docs/protocol.md says a worker does, so these
tests do not depend on amqpq.worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from amqpq.app import App
from amqpq.settings import Settings
from amqpq.topology.models import Topology
from amqpq.transport.declare import declare_topology_sync
from tests.producer.producer_helpers import TOPOLOGY
from tests.support.fake_worker import FakeWorker
from tests.support.pika_clients import declare_file_objects


@pytest.fixture
def topology() -> Topology:
    return Topology.model_validate(TOPOLOGY)


@pytest.fixture
def declared(broker_url: str, topology: Topology, request: pytest.FixtureRequest) -> Topology:
    """The file's objects on the broker (without amqpq's delay levels and DLQs: faster)."""
    if "declared_with_infrastructure" in request.fixturenames:
        return request.getfixturevalue("declared_with_infrastructure")  # type: ignore[no-any-return]
    declare_file_objects(broker_url, topology)
    return topology


@pytest.fixture
def declared_with_infrastructure(settings: Settings, topology: Topology) -> Topology:
    """Everything ``amqpq topology apply`` declares, delay levels included."""
    declare_topology_sync(settings, topology)
    return topology


@pytest.fixture
def app(settings: Settings, declared: Topology) -> Iterator[App]:
    app = App("tests", settings=settings, topology=declared)

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    yield app
    app.close()


@pytest.fixture
def fake_worker(broker_url: str, declared: Topology) -> Iterator[Callable[..., FakeWorker]]:
    started: list[FakeWorker] = []

    def start(*queues: str) -> FakeWorker:
        worker = FakeWorker(broker_url, queues or ("default",)).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
