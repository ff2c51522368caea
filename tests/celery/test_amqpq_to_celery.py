"""amqpq producers -> Celery workers: a ``protocol: celery`` route sends Celery protocol 2
JSON, a real ``celery worker`` runs it, and amqpq's ``AsyncResult.get()`` reads the
Celery worker's rpc:// reply over direct reply-to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amqpq.app import App
from amqpq.errors import RemoteTaskError
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.transport.declare import declare_topology_sync
from tests.celery.conftest import CeleryWorker
from tests.support.cli import run_cli
from tests.support.processes import amqpq_env

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "celery_topology.yaml"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def app(broker_url: str) -> Iterator[App]:
    declare_topology_sync(Settings(url=broker_url), load_topology(TOPOLOGY))
    app = App("caller", url=broker_url, topology=TOPOLOGY)
    yield app
    app.close()


def wait_ready(worker: CeleryWorker) -> CeleryWorker:
    from tests.support.waiting import eventually

    eventually(
        lambda: " ready." in worker.log(), timeout=60, what=f"celery worker:\n{worker.log()}"
    )
    return worker


def test_send_task_on_a_celery_route_runs_on_a_celery_worker_and_returns_its_result(
    app: App, celery_worker: Callable[[str], CeleryWorker], broker_url: str
) -> None:
    worker = wait_ready(celery_worker("legacy"))

    positional = app.send_task("legacy.multiply", args=[6, 7])
    keywords = app.send_task("legacy.multiply", args=[3], kwargs={"y": 5})

    assert positional.get(timeout=30) == 42
    assert keywords.get(timeout=30) == 15
    assert f"legacy.multiply[{positional.id}] succeeded" in worker.log()

    # The command line sends through the same producer: `amqpq send ... --wait`.
    sent = run_cli(
        amqpq_env(broker_url), "send", "legacy.multiply", "6", "9", "--wait", "-f", str(TOPOLOGY)
    )
    assert (sent.returncode, sent.stdout.strip()) == (0, "54"), sent.stderr


async def test_the_asyncio_producer_sends_to_a_celery_worker_too(
    app: App, celery_worker: Callable[[str], CeleryWorker]
) -> None:
    wait_ready(celery_worker("legacy"))

    result = await app.asend_task("legacy.multiply", args=[2, 21], countdown=1)

    assert await result.aget(timeout=30) == 42


def test_a_failing_celery_task_raises_its_error_in_the_amqpq_caller(
    app: App, celery_worker: Callable[[str], CeleryWorker]
) -> None:
    wait_ready(celery_worker("legacy"))

    result = app.send_task("legacy.fail", args=["printer on fire"])

    with pytest.raises(RemoteTaskError, match="printer on fire") as raised:
        result.get(timeout=30)
    assert raised.value.type_name == "ValueError"
