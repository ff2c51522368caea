"""The synchronous producer against the real broker (each test in its own vhost)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pika
import pytest

from amqpq.app import App
from amqpq.envelope import TaskState
from amqpq.errors import (
    BrokerError,
    RemoteTaskError,
    ResultTimeoutError,
    TaskRevokedError,
    UnroutableError,
)
from amqpq.producer import Producer
from amqpq.rpc import AsyncResult
from amqpq.settings import Settings
from amqpq.transport.blocking import BlockingBroker
from tests.support.fake_worker import FakeWorker
from tests.support.pika_clients import get_message, queue_depth

pytestmark = pytest.mark.rabbitmq


def test_a_sent_task_lands_persistent_in_its_queue_with_the_documented_properties(
    app: App, broker_url: str
) -> None:
    result = app.send_task("tasks.add", [3, 4], task_id="my-id", priority=5, headers={"k": "v"})

    method, properties, body = get_message(broker_url, "default")
    assert result.id == "my-id"
    assert method.exchange == "tasks"
    assert method.routing_key == "default"
    assert properties.delivery_mode == 2
    assert properties.content_type == "application/json"
    assert properties.message_id == properties.correlation_id == "my-id"
    assert properties.reply_to.startswith("amq.rabbitmq.reply-to")
    assert properties.priority == 5
    assert properties.type == "tasks.add"
    assert properties.headers["amqpq-protocol"] == 1
    assert properties.headers["amqpq-task"] == "tasks.add"
    assert properties.headers["k"] == "v"
    envelope = json.loads(body)
    assert envelope["protocol"] == 1
    assert envelope["id"] == "my-id"
    assert envelope["task"] == "tasks.add"
    assert envelope["args"] == [3, 4]
    assert "created_at" in envelope


def test_a_message_the_broker_returns_raises_unroutable_fast(app: App, broker_url: str) -> None:
    # Given a route the file says works, but the binding is missing on the broker
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().queue_unbind("orphaned", "orphan", "k")
    connection.close()
    app.producer.connect()

    started = time.monotonic()
    with pytest.raises(UnroutableError, match="returned"):
        app.send_task("tasks.orphan", [])
    assert time.monotonic() - started < 1
    # and the producer keeps working
    app.send_task("tasks.add", [1, 1], ignore_result=True)


def test_publishing_to_an_exchange_missing_on_the_broker_says_so(app: App, broker_url: str) -> None:
    # Given an exchange the file declares but the broker does not have (not applied)
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().exchange_delete("orphan")
    connection.close()

    with pytest.raises(UnroutableError, match="exchange 'orphan' does not exist"):
        app.send_task("tasks.orphan", [])
    # An exchange outside the file is refused before anything is published.
    with pytest.raises(UnroutableError, match="no binding in the topology file"):
        app.send_task("tasks.add", [1, 2], exchange="ghost", routing_key="x")
    app.send_task("tasks.add", [1, 1], ignore_result=True)


def test_a_failed_task_raises_a_remote_error(
    app: App, fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    result = app.send_task("tasks.fail", [])
    with pytest.raises(RemoteTaskError) as caught:
        result.get(timeout=5)
    assert caught.value.type_name == "ValueError"
    assert caught.value.message == "boom"
    assert caught.value.traceback == "Traceback"
    assert result.failed()
    assert result.state is TaskState.FAILURE
    assert isinstance(result.get(timeout=1, propagate=False), RemoteTaskError)
    with pytest.raises(TaskRevokedError):
        app.send_task("tasks.revoked", []).get(timeout=5)


def test_progress_replies_update_the_state_before_the_result(
    app: App, fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    result = app.send_task("tasks.progress", [0.3])
    deadline = time.monotonic() + 5
    while result.state is TaskState.PENDING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert result.state in (TaskState.STARTED, TaskState.PROGRESS)
    assert result.get(timeout=5) == "done"


def test_no_result_within_the_timeout_raises_result_timeout(
    app: App, fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    result = app.send_task("tasks.silent", [])
    started = time.monotonic()
    with pytest.raises(ResultTimeoutError, match=result.id):
        result.get(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.5
    assert result.state is TaskState.PENDING


def test_unknown_and_late_replies_are_ignored(
    app: App, fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    assert app.send_task("tasks.noisy", [1]).get(timeout=5) == [1]
    # A result object dropped before its reply arrives: the reply is dropped safely.
    app.send_task("tasks.add", [1, 1])
    assert app.send_task("tasks.add", [2, 2]).get(timeout=5) == 4


def test_many_threads_share_one_connection_and_each_get_their_own_result(
    app: App, fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def call(n: int) -> None:
        try:
            for i in range(5):
                results[n * 100 + i] = app.send_task("tasks.add", [n, i]).get(timeout=10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors
    assert results == {n * 100 + i: n + i for n in range(16) for i in range(5)}


def _close_connections(management: httpx.Client, vhost: str, name: str) -> int:
    closed = 0
    for connection in management.get(f"/vhosts/{quote(vhost, safe='')}/connections").json():
        if connection.get("client_properties", {}).get("connection_name") == name:
            management.delete(f"/connections/{quote(connection['name'], safe='')}")
            closed += 1
    return closed


def test_the_producer_reconnects_after_its_connection_was_closed(
    app: App,
    management: httpx.Client,
    vhost: str,
    broker_url: str,
    fake_worker: Callable[..., FakeWorker],
) -> None:
    producer = app.producer
    app.send_task("tasks.add", [1, 2], ignore_result=True)
    deadline = time.monotonic() + 10
    while not _close_connections(management, vhost, producer.broker.name):
        assert time.monotonic() < deadline, "producer connection not listed by the management API"
        time.sleep(0.1)
    time.sleep(0.2)

    app.send_task("tasks.add", [3, 4], ignore_result=True)

    assert producer.broker.reconnects == 1
    assert queue_depth(broker_url, "default") == 2
    fake_worker()
    assert app.send_task("tasks.add", [5, 5]).get(timeout=5) == 10


def test_a_result_in_flight_when_the_connection_drops_fails_clearly(
    app: App, management: httpx.Client, vhost: str, fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    result = app.send_task("tasks.sleep", [0.5])
    deadline = time.monotonic() + 10
    while not _close_connections(management, vhost, app.producer.broker.name):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with pytest.raises(BrokerError, match="lost"):
        result.get(timeout=5)


def test_a_durable_result_queue_lets_another_producer_collect_by_task_id(
    app: App, settings: Settings, declared: object, fake_worker: Callable[..., FakeWorker]
) -> None:
    first = app.send_task("tasks.add", [20, 1], result_queue="results.billing", task_id="b-1")
    # The sender keeps no handle on b-2: its reply waits in the queue for someone else.
    other_id = app.send_task("tasks.add", [30, 1], result_queue="results.billing", task_id="b-2").id
    fake_worker()
    assert first.get(timeout=5) == 21

    collector = App("collector", settings=settings, topology=app.topology)
    try:
        result = AsyncResult.from_queue(collector, "b-2", "results.billing")
        assert result.get(timeout=5) == 31
        assert result.state is TaskState.SUCCESS
    finally:
        collector.close()
    assert other_id == "b-2"


def test_a_result_queue_keeps_replies_for_other_ids(
    app: App, broker_url: str, fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    app.send_task("tasks.add", [1, 1], result_queue="results.x", task_id="mine")
    app.send_task("tasks.add", [2, 2], result_queue="results.x", task_id="theirs")
    assert app.producer.result_from_queue("mine", "results.x").get(timeout=5) == 2
    # the other reply is still there for whoever collects it
    deadline = time.monotonic() + 5
    while queue_depth(broker_url, "results.x") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue_depth(broker_url, "results.x") == 1


def test_a_countdown_goes_through_the_delay_levels(
    app: App, broker_url: str, declared_with_infrastructure: object
) -> None:
    started = time.monotonic()
    app.send_task("tasks.add", [1, 2], countdown=0.3, ignore_result=True)
    _, _, body = get_message(broker_url, "default", timeout=5)
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 2.5
    assert json.loads(body)["eta"]


def test_an_eta_in_the_past_is_sent_directly(app: App, broker_url: str) -> None:
    eta = datetime.now(UTC) - timedelta(seconds=5)
    app.send_task("tasks.add", [1, 2], eta=eta, ignore_result=True)
    method, _, _ = get_message(broker_url, "default", timeout=2)
    assert method.exchange == "tasks"


def test_a_producer_can_be_created_and_closed_without_sending(app: App) -> None:
    producer = Producer(app.send_context, BlockingBroker(app.settings))
    producer.connect()
    producer.close()
