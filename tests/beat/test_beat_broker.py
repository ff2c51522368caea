"""``amqpq beat`` against the real broker: real beat processes, what lands in the work queue."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest

from amqpq.app import App
from amqpq.beat import Beat, BeatOptions, BeatToken
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from tests.beat.beat_helpers import TOPOLOGY, ids_of, tick_of
from tests.support.aio_clients import drain

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


def assert_every_tick_once(ids: dict[str, int], schedule: str = "every-second") -> list[datetime]:
    """Each id once, and the ticks a gapless run of seconds; returns them sorted."""
    assert ids, "nothing was sent"
    assert {i: n for i, n in ids.items() if n != 1} == {}, "a tick was sent twice"
    assert all(i.startswith(f"beat:{schedule}:") for i in ids)
    ticks = sorted(tick_of(i) for i in ids)
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != timedelta(seconds=1)]
    assert gaps == [], "ticks were skipped"
    return ticks


async def test_an_interval_schedule_lands_in_its_routed_queue_with_deterministic_ids(
    start_beat, broker_url: str
) -> None:
    # Given one beat with the test App (arguments validated before sending)
    beat = start_beat("-A", "beat_tasks")

    # When it has sent a few ticks and is stopped with SIGTERM
    await beat.wait_for_log("leading:")
    await beat.wait_sent(3)
    beat.signal(signal.SIGTERM)
    assert await beat.wait() == 0
    assert "beat stopped" in beat.log()

    # Then the routed queue holds one task per tick, named after its schedule and tick
    messages = await drain(broker_url, "work")
    ids = ids_of(messages)
    assert sorted(ids) == sorted(beat.sent_ids())
    ticks = assert_every_tick_once(ids)
    assert all(t.microsecond == 0 for t in ticks)
    first = messages[0]
    body = json.loads(first.body)
    assert body["task"] == "bt.tick"
    assert body["args"] == [1, "two"]
    assert body["kwargs"] == {"three": 3}
    assert first.reply_to is None  # nobody waits for a scheduled task's result
    assert first.headers["amqpq-beat-schedule"] == "every-second"
    assert first.headers["amqpq-beat-tick"] == body["id"].split(":", 2)[2]
    # And the connection was named after the role
    assert "connection='amqpq beat " in beat.log()
    # And it said when each schedule runs next: at start, and after each tick it sent
    assert "schedule nightly next run " in beat.log()
    assert " Europe/Berlin (" in beat.log()
    assert beat.log().count("schedule every-second next run ") >= 4


async def test_a_second_beat_stays_follower_and_takes_over_after_a_graceful_stop(
    start_beat, broker_url: str
) -> None:
    # Given a leading beat (sending by task name, without the App)
    first = start_beat()
    await first.wait_for_log("leading:")
    await first.wait_sent(1)

    # When a second beat starts while the first leads
    second = start_beat()
    await second.wait_for_log("beat started")
    await first.wait_sent(len(first.sent_ids()) + 3)

    # Then it sends nothing and does not lead
    assert "leading:" not in second.log()
    assert second.sent_ids() == []

    # When the leader stops gracefully, the follower takes over
    first.signal(signal.SIGTERM)
    assert await first.wait() == 0
    await second.wait_for_log("leading:", timeout=15)
    await second.wait_sent(2)
    second.signal(signal.SIGTERM)
    assert await second.wait() == 0

    # And across the handover every tick was sent exactly once
    ids = ids_of(await drain(broker_url, "work"))
    assert sorted(ids) == sorted(first.sent_ids() + second.sent_ids())
    assert_every_tick_once(ids)


async def test_when_the_leader_is_killed_another_takes_over_and_no_tick_is_lost_or_doubled(
    start_beat, broker_url: str
) -> None:
    # Given two beats, the first leading
    first = start_beat()
    await first.wait_for_log("leading:")
    second = start_beat()
    await second.wait_for_log("beat started")
    await first.wait_sent(3)

    # When the leader is SIGKILLed mid-run
    first.signal(signal.SIGKILL)
    await first.wait()
    killed_at = datetime.now(UTC)

    # Then the other one leads within seconds and goes on sending
    await second.wait_for_log("leading:", timeout=15)
    await second.wait_sent(3)
    second.signal(signal.SIGTERM)
    assert await second.wait() == 0

    # And over the whole run every expected tick is in the queue exactly once
    ids = ids_of(await drain(broker_url, "work"))
    ticks = assert_every_tick_once(ids)
    assert ticks[0] < killed_at < ticks[-1]
    assert set(first.sent_ids()).isdisjoint(second.sent_ids())
    assert sorted(ids) == sorted(first.sent_ids() + second.sent_ids())


# In-process: aio-pika warns about the transport's plain-function consumer callback.
@pytest.mark.filterwarnings("ignore:You probably registering:DeprecationWarning")
async def test_ticks_missed_while_no_beat_ran_are_sent_once_not_as_a_flood(
    broker_url: str, settings: Settings
) -> None:
    # Given a leader queue whose token says "every-second" last ran an hour ago
    topology = load_topology(TOPOLOGY)
    app = App(settings=settings, topology=topology)
    from amqpq.transport.declare import declare_topology

    await declare_topology(settings, topology)
    hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    nightly = datetime.now(UTC)
    token = BeatToken(ticks={"every-second": hour_ago, "nightly": nightly})
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(token.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="amqpq.beat.leader",
        )

    # When a beat with a 3 s catch-up window leads for a moment
    beat = Beat(app, topology, settings, BeatOptions(catch_up=3.0, settle=0.2, declare=False))
    running = asyncio.ensure_future(beat.run(install_signals=False))
    for _ in range(300):  # up to 15 s
        if beat.sent >= 4:
            break
        await asyncio.sleep(0.05)
    started = datetime.now(UTC)
    beat.request_stop()
    assert await asyncio.wait_for(running, 10) == 0

    # Then only the window's ticks were sent (no hour of them), each once and in order
    ids = ids_of(await drain(broker_url, "work"))
    ticks = assert_every_tick_once(ids)
    assert ticks[0] > hour_ago + timedelta(minutes=59)
    assert len(ticks) < 15
    assert ticks[-1] <= started
