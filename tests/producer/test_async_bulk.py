"""The async bulk send (``send_many``, ``map``), whose publishes go out a window at a time:
each call still gets its own confirm, return, nack retries and reconnect retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import httpx
import pika
import pytest

import amqpq.transport.aio
from amqpq.app import App
from amqpq.errors import PublishError, PublishNackedError, UnroutableError
from amqpq.producer import AsyncProducer
from amqpq.settings import Settings
from amqpq.topology.models import Topology
from amqpq.transport.aio import AsyncSendChannel
from amqpq.transport.declare import declare_topology_sync
from amqpq.workflow import TaskCall
from tests.support.broker import connections_named
from tests.support.pika_clients import queue_depth
from tests.support.topologies import BOUNDED

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def aproducer(app: App) -> AsyncIterator[AsyncProducer]:
    producer = app.aproducer()
    yield producer
    await app.aclose()


def _channel(producer: AsyncProducer) -> AsyncSendChannel:
    channel = producer.broker
    assert isinstance(channel, AsyncSendChannel)
    return channel


@pytest.mark.parametrize("windows", [True, False], ids=["windows", "one-by-one"])
async def test_a_returned_message_inside_a_window_fails_its_own_call_only(
    aproducer: AsyncProducer, broker_url: str, windows: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (one-by-one: what an aiormq without what the windows rely on does)
    monkeypatch.setattr(amqpq.transport.aio, "WINDOWS_SUPPORTED", windows)
    # Given a route whose queue binding is gone (the broker returns what is sent there)
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().queue_unbind("orphaned", "orphan", "k")
    connection.close()
    add = [TaskCall("tasks.add", (n, n), options={"ignore_result": True}) for n in range(5)]
    orphan = TaskCall("tasks.orphan", options={"ignore_result": True})

    # When a batch carries one such call among others, it raises for that call
    with pytest.raises(UnroutableError, match="returned") as raised:
        await aproducer.send_many([*add, orphan, *add])
    assert "1 of 11 tasks in this batch were not sent" in str(raised.value.__notes__)
    assert await asyncio.to_thread(queue_depth, broker_url, "default") == 10

    # And each outcome of the window is the right message's
    messages = [
        aproducer.preparer.prepare(c.name, c.args, c.kwargs, c.options).message
        for c in [*add, orphan, *add]
    ]
    outcomes = await _channel(aproducer).publish_window(messages, timeout=10)
    assert isinstance(outcomes[5], UnroutableError)
    assert [type(o) for i, o in enumerate(outcomes) if i != 5] == [int] * 10


async def test_a_window_past_its_deadline_fails_each_unconfirmed_call(
    aproducer: AsyncProducer,
) -> None:
    messages = [
        aproducer.preparer.prepare("tasks.add", (n, n), None, {"ignore_result": True}).message
        for n in range(3)
    ]
    await aproducer.connect()
    outcomes = await _channel(aproducer).publish_window(messages, timeout=0)
    assert [type(o) for o in outcomes] == [PublishError] * 3
    assert "no publisher confirm within 0s" in str(outcomes[0])
    # the channel goes on: the late confirms are dropped, the next window is confirmed
    assert [type(o) for o in await _channel(aproducer).publish_window(messages)] == [int] * 3


@pytest.fixture
def bounded_app(settings: Settings) -> Iterator[App]:
    """An App whose only queue takes one message and refuses (nacks) the next ones."""
    topology = Topology.model_validate(BOUNDED)
    declare_topology_sync(settings, topology)
    app = App("tests", settings=settings, topology=topology)
    yield app
    app.close()


@pytest.mark.parametrize("windows", [True, False], ids=["windows", "one-by-one"])
async def test_a_nack_inside_a_window_is_retried_and_raised_for_its_own_call(
    bounded_app: App, broker_url: str, windows: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(amqpq.transport.aio, "WINDOWS_SUPPORTED", windows)
    producer = bounded_app.aproducer()
    try:
        # The first message of the window fills the queue; the broker refuses the others,
        # sent again after each pause before they fail
        messages = [
            producer.preparer.prepare(f"tasks.t{n}", (), None, {"ignore_result": True}).message
            for n in range(3)
        ]
        outcomes = await _channel(producer).publish_window(messages, timeout=10)
        assert type(outcomes[0]) is int
        for refused in outcomes[1:]:
            assert isinstance(refused, PublishNackedError)
            assert "refused 4 times over 1.4s" in str(refused)

        # And the batch API raises the first of them, saying how many were not sent
        with pytest.raises(PublishNackedError, match=r"refused 4 times") as raised:
            await producer.map("tasks.t", [(), ()], ignore_result=True)
        assert "2 of 2 tasks in this batch were not sent" in str(raised.value.__notes__)
    finally:
        await bounded_app.aclose()
    assert await asyncio.to_thread(queue_depth, broker_url, "bounded") == 1


async def _producer_connections(
    producer: AsyncProducer, management: httpx.Client, vhost: str
) -> list[str]:
    return await connections_named(management, vhost, _channel(producer).name)


async def _close(management: httpx.Client, connections: list[str]) -> None:
    for connection in connections:
        await asyncio.to_thread(management.delete, f"/connections/{quote(connection, safe='')}")


async def test_a_connection_closed_under_a_bulk_send_is_retried_after_the_reconnect(
    aproducer: AsyncProducer, management: httpx.Client, vhost: str, broker_url: str
) -> None:
    # Closed right before a batch (the client may not have noticed yet)
    await aproducer.send_task("tasks.add", [0, 0], ignore_result=True)
    await _close(management, await _producer_connections(aproducer, management, vhost))
    assert len(await aproducer.map("tasks.add", [(1, 2)] * 50, ignore_result=True)) == 50
    assert await asyncio.to_thread(queue_depth, broker_url, "default") == 51

    # And closed while a batch is under way: every call is sent (at least once)
    connections = await _producer_connections(aproducer, management, vhost)
    calls = [(n, n) for n in range(10_000)]
    sending = asyncio.ensure_future(aproducer.map("tasks.add", calls, ignore_result=True))
    await asyncio.sleep(0.05)
    await _close(management, connections)
    assert not sending.done()
    assert len(await sending) == 10_000
    assert _channel(aproducer).broker.reconnects == 2
    assert await asyncio.to_thread(queue_depth, broker_url, "default") >= 10_051
