"""The per-chord queues on RabbitMQ (transport/chords.py): counts, one joiner at a time,
release with the duplicates dropped, and the queue gone once the join is done."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import httpx
import pytest

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.settings import Settings
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.chords import AioChordQueues

pytestmark = pytest.mark.rabbitmq

QUEUE = "amqpq.chord.test"


def result(index: int) -> OutgoingMessage:
    return OutgoingMessage(
        body=json.dumps({"index": index, "result": index * 10}).encode(),
        properties=MessageProperties(headers={"amqpq-chord-index": index}),
        exchange="",
        routing_key=QUEUE,
    )


def channels(management: httpx.Client, vhost: str) -> int:
    found = management.get(f"/vhosts/{quote(vhost, safe='')}/channels").json()
    return len(found)


def queue_names(management: httpx.Client, vhost: str) -> list[str]:
    return [q["name"] for q in management.get(f"/queues/{quote(vhost, safe='')}").json()]


async def test_one_joiner_at_a_time_and_nothing_lost(
    settings: Settings, management: httpx.Client, vhost: str
) -> None:
    broker = AsyncBroker(settings, "worker")
    chords = AioChordQueues(broker)
    try:
        # Given three results, one of them twice (a redelivered member)
        counts = [await chords.add(QUEUE, result(i), expires_ms=60_000) for i in (0, 1, 1)]
        assert counts == [1, 2, 3]

        # When one joiner holds the queue, a second is refused, and a result arrives
        held = await chords.join(QUEUE)
        assert held is not None
        assert [json.loads(m)["index"] for m in held.messages] == [0, 1, 1]
        assert await chords.join(QUEUE) is None
        # (pushed to the holder's consumer, or still ready: the count misses the held ones)
        assert await chords.add(QUEUE, result(2), expires_ms=60_000) in (0, 1)

        # Then letting go without the duplicate leaves the three distinct results ready, and
        # the count says so at once (taken after the requeue, not ahead of it)
        assert await held.release([2]) == 3
        again = await chords.join(QUEUE)
        assert again is not None
        assert sorted(json.loads(m)["index"] for m in again.messages) == [0, 1, 2]
        await again.finish()
        assert QUEUE not in await asyncio.to_thread(queue_names, management, vhost)
        # And the refused joiner's channel did not stay open (only the adding one is left)
        await broker.connect()
        assert await asyncio.to_thread(channels, management, vhost) <= 2
    finally:
        await broker.close()
