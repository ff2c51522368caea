"""Replies to a caller that has gone are skipped (docs/protocol.md, "Callers"), on the real broker.

A producer that consumes direct reply-to holds an exclusive caller queue on its
connection and names it in its tasks; a worker asks the broker whether that queue
still exists before it keeps replying.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from pathlib import Path

import aiormq
import pika
import pytest

from amqpq.app import App
from amqpq.transport.declare import declare_topology
from amqpq.transport.replies import CallerPresence
from amqpq.wire import CALLER_QUEUE_PREFIX, HEADER_CALLER
from tests.support.cli import run_cli
from tests.support.pika_clients import get_message
from tests.support.processes import amqpq_env
from tests.support.waiting import eventually

pytestmark = pytest.mark.rabbitmq

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "worker_topology.yaml"


def _passive_declare(broker_url: str, queue: str) -> int:
    """0 when ``queue`` exists and is not exclusive; else the broker's reply code."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        connection.channel().queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        return int(exc.reply_code)
    finally:
        connection.close()
    return 0


@pytest.fixture
def app(broker_url: str) -> App:
    sender = App("wt", url=broker_url, topology=TOPOLOGY)
    asyncio.run(declare_topology(sender.settings, sender.topology))
    return sender


def test_a_sync_producer_names_its_caller_queue_which_lives_as_long_as_its_connection(
    app: App, broker_url: str
) -> None:
    # When a task asks for a reply (the default)
    app.send_task("wt.add", [1, 2])
    _, properties, _ = get_message(broker_url, "work")

    # Then it names the producer's caller queue, held exclusively by its connection
    caller = properties.headers[HEADER_CALLER]
    assert caller.startswith(CALLER_QUEUE_PREFIX)
    assert _passive_declare(broker_url, caller) == 405  # RESOURCE_LOCKED: someone holds it
    # And a task that asks for no reply names none
    app.send_task("wt.add", [1, 2], ignore_result=True)
    _, quiet, _ = get_message(broker_url, "work")
    assert HEADER_CALLER not in (quiet.headers or {})

    # When the producer closes, its caller queue is gone with its connection
    app.close()
    assert _passive_declare(broker_url, caller) == 404


async def test_an_async_producer_names_its_caller_queue_too(app: App, broker_url: str) -> None:
    await app.aproducer().send_task("wt.add", [1, 2])
    _, properties, _ = await asyncio.to_thread(get_message, broker_url, "work")
    caller = properties.headers[HEADER_CALLER]
    assert caller.startswith(CALLER_QUEUE_PREFIX)
    assert await asyncio.to_thread(_passive_declare, broker_url, caller) == 405
    await app.aclose()
    assert await asyncio.to_thread(_passive_declare, broker_url, caller) == 404


async def test_presence_is_looked_up_in_the_background_and_never_waited_for(
    app: App, broker_url: str
) -> None:
    app.send_task("wt.add", [1, 2])
    _, properties, _ = await asyncio.to_thread(get_message, broker_url, "work")
    caller = properties.headers[HEADER_CALLER]
    connection = await aiormq.connect(broker_url)
    presence = CallerPresence(partial(connection.channel, publisher_confirms=False))
    try:
        # An unknown caller counts as present while the broker is asked
        assert presence.gone(caller) is False
        await asyncio.sleep(0.3)
        assert presence.gone(caller) is False  # the broker said: present
        assert presence.skipped == 0

        # Once the producer closed and the answer is stale, the next lookup finds it gone
        await asyncio.to_thread(app.close)
        presence.RECHECK_AFTER = 0.0
        presence.gone(caller)
        await asyncio.sleep(0.3)
        assert presence.gone(caller) is True
        assert presence.skipped == 1
        # A caller queue someone declared without exclusivity is not judged: replies go on
        channel = await connection.channel()
        await channel.queue_declare(f"{CALLER_QUEUE_PREFIX}shared", auto_delete=True)
        presence.gone(f"{CALLER_QUEUE_PREFIX}shared")
        await asyncio.sleep(0.3)
        assert presence.gone(f"{CALLER_QUEUE_PREFIX}shared") is False
    finally:
        await presence.close()
        await connection.close()


def test_a_worker_skips_the_replies_of_a_caller_that_has_gone_and_answers_live_ones(
    app: App, broker_url: str, start_worker
) -> None:
    # Given tasks sent with default options by a producer that has gone since
    app.producer.map("wt.add", [(1, 2)] * 30)
    app.close()

    # When a worker runs them
    env = amqpq_env(broker_url)
    start_worker("-Q", "work", "-c", "1").started_blocking()

    # Then all of them run, and the replies nobody could read are not sent
    def skipped() -> int | None:
        done = run_cli(env, "inspect", "--json", "--timeout", "1", cwd=HERE)
        if done.returncode != 0:
            return None
        [worker] = json.loads(done.stdout)["workers"]
        stats = worker["stats"]
        return stats["replies_skipped"] if stats["succeeded"] == 30 else None

    assert eventually(skipped, what="30 tasks run, some replies skipped") > 0

    # And a caller that is there still gets its results, before and after the lookup
    live = App("wt", url=broker_url, topology=TOPOLOGY)
    try:
        assert live.send_task("wt.add", [2, 3]).get(timeout=10) == 5
        assert live.send_task("wt.add", [4, 5]).get(timeout=10) == 9
    finally:
        live.close()
