"""The transport seam: memory and aio implementations are siblings behind transport/base.py."""

from __future__ import annotations

import subprocess
import sys

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.topology.models import Topology
from amqpq.transport.memory import MemoryBroker, MemoryDelivery, MemoryPublisher


def _broker() -> MemoryBroker:
    return MemoryBroker(Topology.model_validate({"queues": [{"name": "work"}]}))


def test_the_memory_implementations_subclass_nothing() -> None:
    assert MemoryDelivery.__mro__ == (MemoryDelivery, object)
    assert MemoryPublisher.__mro__ == (MemoryPublisher, object)


def test_the_memory_transport_loads_no_client_library() -> None:
    code = (
        "import sys, amqpq.transport.memory, amqpq.transport.base\n"
        "loaded = [m for m in ('aio_pika', 'aiormq', 'pika') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_a_memory_delivery_settles_once_and_reports_its_delivery_count() -> None:
    broker = _broker()
    await MemoryPublisher(broker).publish(
        OutgoingMessage(b"{}", MessageProperties(message_id="m1"), exchange="", routing_key="work")
    )
    taken = broker.next_ready(["work"])
    assert taken is not None
    queue, message, tag = taken
    delivery = MemoryDelivery(broker, queue, message, tag, "tag.work")

    assert delivery.channel_open
    assert delivery.delivery_count == 0
    assert await delivery.nack(requeue=True)
    assert not await delivery.ack()  # settled already
    again = broker.next_ready(["work"])
    assert again is not None
    redelivered = MemoryDelivery(broker, *again, "tag.work")
    assert redelivered.redelivered
    assert redelivered.delivery_count == 1
    assert await redelivered.ack()
    assert broker.queue("work").ready == []


async def test_the_memory_publisher_is_the_test_brokers_reply_path_too() -> None:
    broker = _broker()
    replies = MemoryPublisher(broker)
    await replies.start()

    sent = await replies.send(
        OutgoingMessage(
            b"{}", MessageProperties(correlation_id="t1"), exchange="", routing_key="work"
        )
    )

    assert sent
    assert [m.properties.correlation_id for m in broker.queue("work").ready] == ["t1"]
