"""A message RabbitMQ refuses (basic.nack) is sent again for a moment before the sender
gets an error: a quorum queue refuses messages while it elects a leader after a node
loss, and a full ``reject-publish`` queue until a consumer makes room.

Here a queue of one message with ``overflow: reject-publish`` makes the broker refuse,
and a consumer (or nobody) makes room while the producers try again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pika
import pytest

from amqpq.app import App
from amqpq.errors import PublishNackedError
from amqpq.settings import Settings
from amqpq.topology.models import Topology
from amqpq.transport.declare import declare_topology_sync
from tests.support.pika_clients import queue_depth
from tests.support.topologies import BOUNDED

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def full_queue_app(settings: Settings) -> Iterator[App]:
    """An App whose only queue holds one message and already has it."""
    topology = Topology.model_validate(BOUNDED)
    declare_topology_sync(settings, topology)
    app = App("tests", settings=settings, topology=topology)
    app.send_task("tasks.first", ignore_result=True)
    yield app
    app.close()


def _take_one_later(broker_url: str, after: float) -> threading.Thread:
    def take() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        try:
            connection.sleep(after)
            method, _, _ = connection.channel().basic_get("bounded", auto_ack=True)
            assert method is not None
        finally:
            connection.close()

    thread = threading.Thread(target=take)
    thread.start()
    return thread


def test_a_refused_send_goes_through_once_the_queue_takes_it_again(
    full_queue_app: App, broker_url: str
) -> None:
    # Given a full queue that a consumer makes room in a moment after the send starts
    taker = _take_one_later(broker_url, after=0.2)

    # When a task is sent to it
    result = full_queue_app.send_task("tasks.second", ignore_result=True)
    taker.join()

    # Then the send succeeds (sent again after the refusal) and the task is queued
    assert result.id
    assert queue_depth(broker_url, "bounded") == 1


async def test_an_async_refused_send_goes_through_once_the_queue_takes_it_again(
    full_queue_app: App, broker_url: str
) -> None:
    taker = _take_one_later(broker_url, after=0.2)
    try:
        result = await full_queue_app.aproducer().send_task("tasks.second", ignore_result=True)
    finally:
        taker.join()
        await full_queue_app.aclose()
    assert result.id
    assert queue_depth(broker_url, "bounded") == 1


def test_a_send_refused_for_good_says_how_often_it_was_tried(full_queue_app: App) -> None:
    with pytest.raises(PublishNackedError, match=r"refused 4 times over 1\.4s"):
        full_queue_app.send_task("tasks.second", ignore_result=True)


async def test_an_async_send_refused_for_good_says_how_often_it_was_tried(
    full_queue_app: App,
) -> None:
    try:
        with pytest.raises(PublishNackedError, match=r"refused 4 times over 1\.4s"):
            await full_queue_app.aproducer().send_task("tasks.second", ignore_result=True)
    finally:
        await full_queue_app.aclose()
