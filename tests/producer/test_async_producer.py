"""The asyncio producer against the real broker (each test in its own vhost)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import httpx
import pika
import pytest

from amqpq.app import App
from amqpq.errors import ArgumentsError, RemoteTaskError, ResultTimeoutError, UnroutableError
from amqpq.producer import AsyncProducer
from tests.support.broker import connections_named
from tests.support.fake_worker import FakeWorker
from tests.support.pika_clients import get_message, queue_depth

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def aproducer(app: App) -> AsyncIterator[AsyncProducer]:
    producer = app.aproducer()
    yield producer
    await app.aclose()


async def test_an_async_send_lands_persistent_in_its_queue(
    aproducer: AsyncProducer, broker_url: str
) -> None:
    result = await aproducer.send_task("tasks.add", [3, 4], task_id="a-1")
    method, properties, body = await asyncio.to_thread(get_message, broker_url, "default")
    assert result.id == "a-1"
    assert (method.exchange, method.routing_key) == ("tasks", "default")
    assert properties.delivery_mode == 2
    assert properties.message_id == properties.correlation_id == "a-1"
    assert properties.reply_to.startswith("amq.rabbitmq.reply-to")
    assert properties.headers["amqpq-task"] == "tasks.add"
    assert json.loads(body)["args"] == [3, 4]


async def test_many_coroutines_each_get_their_own_result(
    aproducer: AsyncProducer, fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()

    async def call(n: int) -> int:
        result = await aproducer.send_task("tasks.add", [n, 1000])
        return await result.aget(timeout=10)  # type: ignore[no-any-return]

    assert await asyncio.gather(*(call(n) for n in range(200))) == [n + 1000 for n in range(200)]


async def test_async_unroutable_fails_fast_statically_and_on_return(
    aproducer: AsyncProducer, broker_url: str
) -> None:
    started = time.monotonic()
    with pytest.raises(UnroutableError):
        await aproducer.send_task("tasks.nowhere", [])
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().queue_unbind("orphaned", "orphan", "k")
    connection.close()
    with pytest.raises(UnroutableError, match=r"NO_ROUTE|returned"):
        await aproducer.send_task("tasks.orphan", [])
    assert time.monotonic() - started < 2
    await aproducer.send_task("tasks.add", [1, 1], ignore_result=True)


async def test_async_missing_exchange_and_bad_arguments(
    aproducer: AsyncProducer, broker_url: str
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().exchange_delete("orphan")
    connection.close()
    with pytest.raises(UnroutableError, match="exchange 'orphan' does not exist"):
        await aproducer.send_task("tasks.orphan", [])
    with pytest.raises(ArgumentsError):
        await aproducer.send_task("tasks.add", ["x", 1])
    assert await asyncio.to_thread(queue_depth, broker_url, "default") == 0


async def test_async_failures_and_timeouts(
    aproducer: AsyncProducer, fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    failed = await aproducer.send_task("tasks.fail", [])
    with pytest.raises(RemoteTaskError, match="ValueError: boom"):
        await failed.aget(timeout=5)
    silent = await aproducer.send_task("tasks.silent", [])
    with pytest.raises(ResultTimeoutError):
        await silent.aget(timeout=0.2)
    noisy = await aproducer.send_task("tasks.noisy", ["x"])
    assert await noisy.aget(timeout=5) == ["x"]


async def test_sync_get_on_an_async_result_inside_the_loop_is_refused_clearly(
    aproducer: AsyncProducer,
) -> None:
    result = await aproducer.send_task("tasks.silent", [])
    with pytest.raises(Exception, match="aget"):
        result.get(timeout=0.1)


async def test_async_durable_result_queue(
    aproducer: AsyncProducer, fake_worker: Callable[..., FakeWorker]
) -> None:
    task_id = (await aproducer.send_task("tasks.add", [2, 3], result_queue="results.a")).id
    fake_worker()
    result = aproducer.result_from_queue(task_id, "results.a")
    assert await result.aget(timeout=5) == 5


async def test_the_async_producer_recovers_after_its_connection_was_closed(
    aproducer: AsyncProducer,
    management: httpx.Client,
    vhost: str,
    broker_url: str,
    fake_worker: Callable[..., FakeWorker],
) -> None:
    await aproducer.send_task("tasks.add", [1, 2], ignore_result=True)
    name = aproducer.broker.name
    deadline = time.monotonic() + 10
    closed = 0
    while not closed:
        assert time.monotonic() < deadline, "connection not listed by the management API"
        response = await asyncio.to_thread(
            management.get, f"/vhosts/{quote(vhost, safe='')}/connections"
        )
        for connection in response.json():
            if connection.get("client_properties", {}).get("connection_name") == name:
                await asyncio.to_thread(
                    management.delete, f"/connections/{quote(connection['name'], safe='')}"
                )
                closed += 1
        await asyncio.sleep(0.1)

    await aproducer.send_task("tasks.add", [3, 4], ignore_result=True)

    assert await asyncio.to_thread(queue_depth, broker_url, "default") == 2
    fake_worker()
    result = await aproducer.send_task("tasks.add", [5, 5])
    assert await result.aget(timeout=5) == 10


async def test_a_send_right_after_the_broker_closed_the_connection_waits_for_the_new_one(
    aproducer: AsyncProducer, management: httpx.Client, vhost: str, broker_url: str
) -> None:
    """No pause between the close and the send: the client may not have noticed yet."""
    await aproducer.send_task("tasks.add", [0, 0], ignore_result=True)
    name = aproducer.broker.name
    for round_ in range(1, 4):
        listed = await connections_named(management, vhost, name)
        for connection in listed:
            await asyncio.to_thread(management.delete, f"/connections/{quote(connection, safe='')}")
        await aproducer.send_task("tasks.add", [round_, round_], ignore_result=True)
    assert await asyncio.to_thread(queue_depth, broker_url, "default") == 4
