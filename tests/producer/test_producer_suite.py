"""One producer suite, two transports: each case runs against RabbitMQ and in memory.

On RabbitMQ the tasks are answered by the bare-pika fake worker (docs/protocol.md);
in memory by :class:`amqpq.testing.TestBroker`, which runs the same
:class:`~amqpq.producer.Producer` / :class:`~amqpq.producer.AsyncProducer` over
its memory transport and the worker's own handler. A case here says what a
producer does whatever carries its messages.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from amqpq.app import App
from amqpq.envelope import TaskState
from amqpq.errors import ArgumentsError, UnroutableError
from amqpq.producer import TaskCall
from amqpq.testing import TestBroker
from amqpq.topology.models import Topology
from tests.producer.producer_helpers import TOPOLOGY
from tests.support.fake_worker import FakeWorker
from tests.support.pika_clients import get_message, queue_depth


@dataclass(frozen=True)
class Taken:
    """A message taken off a queue, whichever broker held it."""

    exchange: str
    routing_key: str
    reply_to: str | None
    headers: dict[str, Any]
    body: bytes


@dataclass
class Target:
    """Where the producers send in one run of the suite, and how to look at it."""

    kind: str
    app: App
    take: Callable[[str], Taken]
    """The first message of a queue (waits for it on RabbitMQ)."""
    depth: Callable[[str], int]
    run: Callable[[], None]
    """Have the sent tasks run and answer (RabbitMQ: the fake worker; memory: run_all)."""


@pytest.fixture(params=[pytest.param("rabbitmq", marks=pytest.mark.rabbitmq), "memory"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "rabbitmq":
        yield _on_rabbitmq(request)
        return
    app = App("tests", topology=Topology.model_validate(TOPOLOGY))

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    with TestBroker(app) as broker:

        def take(queue: str) -> Taken:
            with broker.memory.lock:
                stored = broker.memory.queue(queue).ready.pop(0)
            return Taken(
                stored.exchange,
                stored.routing_key,
                stored.properties.reply_to,
                stored.properties.headers,
                stored.body,
            )

        def run() -> None:
            broker.run_all()

        yield Target("memory", app, take, lambda queue: broker.queue(queue).count, run)


def _on_rabbitmq(request: pytest.FixtureRequest) -> Target:
    app: App = request.getfixturevalue("app")
    broker_url: str = request.getfixturevalue("broker_url")
    fake_worker: Callable[..., FakeWorker] = request.getfixturevalue("fake_worker")
    started: list[FakeWorker] = []

    def take(queue: str) -> Taken:
        method, properties, body = get_message(broker_url, queue)
        return Taken(
            method.exchange,
            method.routing_key,
            properties.reply_to,
            properties.headers or {},
            body,
        )

    def run() -> None:
        if not started:
            started.append(fake_worker())

    return Target("rabbitmq", app, take, lambda queue: queue_depth(broker_url, queue), run)


# -- routing -------------------------------------------------------------------------------------


def test_routes_send_each_task_to_its_queue(target: Target) -> None:
    app = target.app
    app.send_task("tasks.send_email", ["a@b.c"], ignore_result=True)
    app.send_task("reports.monthly", [], ignore_result=True)
    app.send_task("tasks.add", [1, 2], routing_key="high", ignore_result=True)

    assert target.take("high").reply_to is None
    assert json.loads(target.take("high").body)["task"] == "tasks.add"
    assert target.take("pdf").headers["format"] == "pdf"


def test_a_route_that_reaches_no_queue_in_the_file_fails_at_once(target: Target) -> None:
    started = time.monotonic()
    with pytest.raises(UnroutableError, match="no-such-key"):
        target.app.send_task("tasks.nowhere", [])
    assert time.monotonic() - started < 1


async def test_async_unroutable_fails_at_once(target: Target) -> None:
    with pytest.raises(UnroutableError):
        await target.app.aproducer().send_task("tasks.nowhere", [])
    await target.app.aclose()


# -- validation ----------------------------------------------------------------------------------


def test_arguments_are_validated_at_send_time_for_known_tasks(target: Target) -> None:
    with pytest.raises(ArgumentsError, match="x"):
        target.app.send_task("tasks.add", ["not a number", 2])
    with pytest.raises(ArgumentsError):
        target.app.send_task("tasks.add", [1, 2, 3])
    assert target.depth("default") == 0


def test_send_many_validates_everything_before_sending_anything(target: Target) -> None:
    with pytest.raises(ArgumentsError):
        target.app.producer.map("tasks.add", [(1, 2), ("x", 2)])
    assert target.depth("default") == 0


# -- results -------------------------------------------------------------------------------------


def test_delay_returns_the_result(target: Target) -> None:
    add = target.app.registry.get("tasks.add")
    result = add.delay(3, 4)
    target.run()
    assert result.get(timeout=5) == 7
    assert result.state is TaskState.SUCCESS
    assert result.ready()
    assert result.successful()
    assert not result.failed()
    assert result.info == 7
    assert result.result == 7


def test_ignore_result_sends_no_reply_address(target: Target) -> None:
    result = target.app.send_task("tasks.add", [1, 2], ignore_result=True)
    assert target.take("default").reply_to is None
    with pytest.raises(Exception, match="ignore_result"):
        result.get(timeout=1)


def test_send_many_sends_a_batch_and_every_result_comes_back(target: Target) -> None:
    results = target.app.producer.map("tasks.add", [(i, 1) for i in range(300)])
    more = target.app.producer.send_many([TaskCall("tasks.add", (1,), {"y": 2})])
    target.run()
    assert [r.get(timeout=10) for r in results] == [i + 1 for i in range(300)]
    assert more[0].get(timeout=5) == 3


async def test_adelay_and_aget_return_the_result(target: Target) -> None:
    result = await target.app.registry.get("tasks.add").adelay(3, 4)
    await asyncio.to_thread(target.run)
    assert await result.aget(timeout=5) == 7
    assert result.state is TaskState.SUCCESS
    await target.app.aclose()


async def test_async_send_many_sends_a_batch_and_every_result_comes_back(target: Target) -> None:
    aproducer = target.app.aproducer()
    results = await aproducer.map("tasks.add", [(i, i) for i in range(200)])
    results += await aproducer.send_many([TaskCall("tasks.add", (1, 2))])
    await asyncio.to_thread(target.run)
    values = await asyncio.gather(*(r.aget(timeout=10) for r in results))
    assert values == [2 * i for i in range(200)] + [3]
    await target.app.aclose()


async def test_async_send_many_with_few_confirms_in_flight_answers_in_the_order_of_the_calls(
    target: Target,
) -> None:
    # Given more calls than confirms allowed in flight
    aproducer = target.app.aproducer()
    calls = [TaskCall("tasks.add", (i, 1)) for i in range(25)]
    # When they are sent three at a time
    results = await aproducer.send_many(calls, concurrency=3)
    # Then every call is sent once, and each handle is the one of its call
    assert len({r.id for r in results}) == 25
    await asyncio.to_thread(target.run)
    values = await asyncio.gather(*(r.aget(timeout=10) for r in results))
    assert values == [i + 1 for i in range(25)]
    await target.app.aclose()


# -- hooks ---------------------------------------------------------------------------------------


def test_publish_hooks_run_around_each_send_and_can_add_headers(target: Target) -> None:
    app = target.app
    seen: list[tuple[str, str]] = []

    @app.before_publish
    def stamp(envelope: Any, exchange: str, routing_key: str, headers: dict[str, Any]) -> None:
        headers["x-tenant"] = "acme"
        seen.append(("before", envelope.id))

    @app.after_publish
    def confirmed(envelope: Any, exchange: str, routing_key: str, result: Any) -> None:
        seen.append(("after", result.id))

    one = app.send_task("tasks.add", [1, 2], ignore_result=True)
    batch = app.producer.map("tasks.add", [(1, 1), (2, 2)], ignore_result=True)

    ids = [one.id, *(r.id for r in batch)]
    assert seen == [
        ("before", ids[0]),
        ("after", ids[0]),
        ("before", ids[1]),
        ("before", ids[2]),
        ("after", ids[1]),
        ("after", ids[2]),
    ]
    assert target.take("default").headers["x-tenant"] == "acme"


async def test_publish_hooks_run_for_the_async_producer(target: Target) -> None:
    app = target.app
    seen: list[str] = []
    app.before_publish(lambda **kw: seen.append("before"))
    app.after_publish(lambda **kw: seen.append("after"))

    await app.aproducer().send_task("tasks.add", [1, 2], ignore_result=True)

    assert seen == ["before", "after"]
    await app.aclose()
