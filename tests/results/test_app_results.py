"""``app.AsyncResult(id)`` without a broker: configuration errors, and amqpq.testing's store."""

from __future__ import annotations

import pytest

from amqpq.app import App
from amqpq.envelope import TaskState
from amqpq.errors import ConfigError, RemoteTaskError, TaskRejectedError
from amqpq.rpc import AsyncResult
from amqpq.settings import Settings
from amqpq.testing import TestBroker
from amqpq.topology.models import Topology
from tests.testing.testing_helpers import make_app

OFFLINE = Settings(url="amqp://guest:guest@127.0.0.1:1/none")


def test_without_a_store_a_result_by_id_says_so_in_one_line(topology: Topology) -> None:
    app = App("x", settings=OFFLINE, topology=topology)
    with pytest.raises(ConfigError, match="no result store") as caught:
        app.AsyncResult("order-42")
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="no result store"):
        AsyncResult("order-42", app=app)


def test_a_bare_handle_says_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="without a result store"):
        AsyncResult("order-42").get(timeout=1)


def test_unknown_scheme_and_password_hidden(topology: Topology) -> None:
    app = App("x", settings=OFFLINE, topology=topology, result_backend="mongo://u:pw@h/db")
    with pytest.raises(ConfigError, match="unknown scheme") as caught:
        app.AsyncResult("order-42")
    assert "pw" not in str(caught.value)


def test_environment_variable_names_the_store(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMQPQ_RESULT_BACKEND", "memory://")
    monkeypatch.setenv("AMQPQ_RESULT_EXPIRES", "60")
    app = App("x", url="amqp://guest:guest@127.0.0.1:1/none", topology=topology)
    assert app.result_store is not None
    assert app.result_expires == 60
    assert app.AsyncResult("order-42").state is TaskState.PENDING


def test_results_by_id_in_the_test_broker(topology: Topology) -> None:
    app = make_app(topology)
    with TestBroker(app) as broker:
        app.send_task("tests.add", [2, 3], task_id="order-42")
        app.send_task("tests.boom", task_id="order-43")
        assert app.AsyncResult("order-42").state is TaskState.PENDING
        broker.run_all()
        for handle in (app.AsyncResult("order-42"), AsyncResult("order-42", app=app)):
            assert handle.ready()
            assert handle.get() == 5
            assert handle.result == 5
        failed = app.AsyncResult("order-43")
        assert failed.failed()
        with pytest.raises(RemoteTaskError):
            failed.get()
        app.AsyncResult("order-42").forget()
        assert app.AsyncResult("order-42").state is TaskState.PENDING
    with pytest.raises(ConfigError, match="no result store"):
        app.AsyncResult("order-42")  # the test broker's store is gone with it


async def test_async_twins_in_the_test_broker(topology: Topology) -> None:
    app = make_app(topology)
    async with TestBroker(app) as broker:
        await app.asend_task("tests.progress", [2], task_id="p-1")
        await broker.arun_all()
        handle = app.AsyncResult("p-1")
        assert await handle.arefresh() is TaskState.SUCCESS
        assert await handle.aget(timeout=5) is not None
        await handle.aforget()
        assert await app.AsyncResult("p-1").arefresh() is TaskState.PENDING


def test_rejected_and_retried_states_are_stored(topology: Topology) -> None:
    app = make_app(topology)
    with TestBroker(app) as broker:
        app.send_task("tests.not_a_task", task_id="bad-args")  # no such task: REJECTED
        app.send_task("tests.flaky", [1], task_id="flaky-1")
        broker.run_all()
        rejected = app.AsyncResult("bad-args")
        assert rejected.state is TaskState.REJECTED
        with pytest.raises(TaskRejectedError):
            rejected.get()
        assert app.AsyncResult("flaky-1").state is TaskState.RETRY
        assert app.AsyncResult("flaky-1").info is not None
