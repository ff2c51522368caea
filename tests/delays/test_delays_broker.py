"""Delays, retries, expiry and dead letters on the real broker, with real worker processes.

Timing asserts use wide windows: a task must never run before its time; "after"
allows several seconds on a busy machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from amqpq.app import App
from amqpq.delay import MAX_DELAY_MS, plan_delay
from tests.delays.delay_helpers import TOPOLOGY_FILE, delay_level_counts
from tests.support.aio_clients import Replies, queue_count, take_one, wait_count
from tests.support.cli import run_cli

pytestmark = pytest.mark.rabbitmq

# Runs before its time by at most the worker's ETA_TOLERANCE (100 ms); allow for clock reads.
EARLY = 0.15


def _death(message: aio_pika.abc.AbstractIncomingMessage, queue: str) -> dict[str, object]:
    deaths = message.headers.get("x-death") or []
    return next(d for d in deaths if d["queue"] == queue)


# -- countdown and eta ----------------------------------------------------------------------


async def test_countdown_and_eta_run_after_their_delay_and_not_before(
    app: App, replies: Replies, connection: AbstractRobustConnection, start_worker
) -> None:
    await start_worker("-Q", "work", "-c", "2").started()
    sent = time.time()
    by_countdown = await app.asend_task(
        "dt.stamp", ["countdown"], countdown=2, result_queue=replies.queue
    )
    eta = datetime.now(UTC) + timedelta(seconds=2.5)
    by_eta = await app.asend_task("dt.stamp", ["eta"], eta=eta, result_queue=replies.queue)

    # A second later both still wait on the broker: not in the work queue, not in the worker
    await asyncio.sleep(1.0)
    assert replies.states(by_countdown.id) == replies.states(by_eta.id) == []
    assert await queue_count(connection, "work") == 0

    done = await replies.wait(by_countdown.id, timeout=20)
    assert done["state"] == "SUCCESS"
    assert sent + 2.0 - EARLY <= done["result"]["at"] < sent + 12
    done = await replies.wait(by_eta.id, timeout=20)
    assert done["state"] == "SUCCESS"
    assert eta.timestamp() - EARLY <= done["result"]["at"] < eta.timestamp() + 10
    assert replies.states(by_countdown.id) == replies.states(by_eta.id) == ["SUCCESS"]


async def test_a_short_delay_sent_after_a_long_one_is_not_blocked_by_it(
    app: App, replies: Replies, connection: AbstractRobustConnection, start_worker
) -> None:
    await start_worker("-Q", "work", "-c", "1").started()
    long = await app.asend_task("dt.stamp", ["long"], countdown=60, result_queue=replies.queue)
    short = await app.asend_task("dt.stamp", ["short"], countdown=2, result_queue=replies.queue)

    done = await replies.wait(short.id, timeout=20)
    assert done["result"]["tag"] == "short"
    # The 60 s task still waits in its top level (60,000 ms: highest bit 15, 32.8 s)
    assert replies.states(long.id) == []
    assert await delay_level_counts(connection) == {15: 1}


@pytest.mark.parametrize(
    ("options", "queue"),
    [
        ({}, "work"),  # the task's route: direct exchange dt, key work
        ({"exchange": "dtopic", "routing_key": "orders.eu"}, "orders"),
        ({"exchange": "dhead", "headers": {"format": "pdf"}}, "pdf"),
    ],
    ids=["direct", "topic", "headers"],
)
async def test_a_delayed_task_lands_in_the_queue_its_route_chose(
    app: App, connection: AbstractRobustConnection, options: dict[str, object], queue: str
) -> None:
    sent = await app.asend_task("dt.stamp", [queue], countdown=0.3, ignore_result=True, **options)
    message = await take_one(connection, queue, timeout=10)
    assert json.loads(message.body)["id"] == sent.id
    for other in {"work", "orders", "pdf", "prio", "qwork"} - {queue}:
        assert await queue_count(connection, other) == 0
    assert await delay_level_counts(connection) == {}


# -- retries --------------------------------------------------------------------------------


async def test_retries_through_the_same_delay_levels_are_never_dropped(
    app: App, replies: Replies, connection: AbstractRobustConnection, start_worker
) -> None:
    # 0.2 s = levels 7, 6 and 3: each retry re-enters queues it already expired from.
    # RabbitMQ drops such a message if it still carries its x-death (Celery #9867).
    await start_worker("-Q", "work", "-c", "1").started()
    result = await app.asend_task("dt.retry_n", [5, 0.2], result_queue=replies.queue)

    done = await replies.wait(result.id, timeout=30)
    assert done["state"] == "SUCCESS"
    assert done["result"] == 5
    assert replies.states(result.id) == ["RETRY"] * 5 + ["SUCCESS"]
    assert [r["retries"] for r in replies.by_id[result.id][:5]] == [1, 2, 3, 4, 5]
    assert await queue_count(connection, "work.dlq") == 0


async def test_the_cycle_trap_is_real_a_message_that_keeps_its_x_death_is_dropped(
    declared: object, connection: AbstractRobustConnection
) -> None:
    # The control for the test above: what amqpq must avoid, done on purpose.
    plan = plan_delay(192, target_queue="orders")  # levels 7 and 6
    channel = await connection.channel(publisher_confirms=True)
    level = await channel.get_exchange(plan.exchange)
    await level.publish(aio_pika.Message(b"{}", headers=plan.headers), routing_key="x")
    first = await take_one(connection, "orders", timeout=10)
    assert {d["queue"] for d in first.headers["x-death"]} == {"amqpq.delay.7", "amqpq.delay.6"}

    await level.publish(aio_pika.Message(b"{}", headers=dict(first.headers)), routing_key="x")
    await asyncio.sleep(1.0)  # five times the delay
    assert await queue_count(connection, "orders") == 0
    assert await delay_level_counts(connection) == {}


async def test_exhausted_retries_end_in_the_dead_letter_queue_and_replay_brings_them_back(
    app: App,
    replies: Replies,
    connection: AbstractRobustConnection,
    start_worker,
    broker_url: str,
    tmp_path: Path,
) -> None:
    await start_worker("-Q", "work", "-c", "1").started()
    flag = tmp_path / "flag"
    result = await app.asend_task("dt.needs_flag", [str(flag)], result_queue=replies.queue)

    failure = await replies.wait(result.id, timeout=20)
    assert replies.states(result.id) == ["RETRY", "RETRY", "FAILURE"]
    assert failure["error"]["type"] == "FileNotFoundError"
    await wait_count(connection, "work.dlq", 1)
    channel = await connection.channel()
    dlq = await channel.declare_queue("work.dlq", passive=True)
    letter = await dlq.get(no_ack=False)
    assert letter.headers["amqpq-dead-letter-reason"] == "max_retries_exceeded"
    assert letter.headers["amqpq-error-type"] == "FileNotFoundError"
    assert str(flag) in letter.headers["amqpq-error-message"]
    assert letter.headers["amqpq-original-queue"] == "work"
    assert json.loads(letter.body)["retries"] == 2
    await channel.close()  # gives the letter back, in place

    # Fix the cause, then replay: it runs again with its retries reset, and succeeds
    flag.write_text("fixed")
    replay = await asyncio.to_thread(
        run_cli,
        None,
        "dlq",
        "replay",
        "work",
        "-f",
        str(TOPOLOGY_FILE),
        "--url",
        broker_url,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    assert "replayed 1 dead letter(s) from work.dlq" in replay.stdout
    done = await replies.wait(result.id, {"SUCCESS"}, timeout=20)
    assert done["result"] == "fixed"
    assert done["retries"] == 0
    assert await queue_count(connection, "work.dlq") == 0


async def test_an_expired_task_never_runs_and_is_dead_lettered_as_expired(
    app: App, replies: Replies, connection: AbstractRobustConnection, start_worker, tmp_path: Path
) -> None:
    await start_worker("-Q", "work", "-c", "1").started()
    marker = tmp_path / "ran"
    expired = await app.asend_task(
        "dt.touch",
        [str(marker)],
        expires=datetime.now(UTC) - timedelta(seconds=5),
        result_queue=replies.queue,
    )
    # and one whose expiry passes while it waits for its countdown
    late = await app.asend_task(
        "dt.touch", [str(marker)], countdown=0.5, expires=0.2, result_queue=replies.queue
    )

    for task_id in (expired.id, late.id):
        reply = await replies.wait(task_id, timeout=20)
        assert reply["state"] == "EXPIRED"
        assert reply["error"]["type"] == "TaskExpiredError"
    await wait_count(connection, "work.dlq", 2)
    letters = [await take_one(connection, "work.dlq") for _ in range(2)]
    assert {m.headers["amqpq-dead-letter-reason"] for m in letters} == {"expired"}
    assert not marker.exists()


# -- poison messages: bounded deliveries ----------------------------------------------------


@pytest.mark.slow
async def test_a_poison_task_on_a_quorum_queue_ends_in_the_dead_letter_queue(
    app: App, replies: Replies, connection: AbstractRobustConnection, start_worker
) -> None:
    # Each run kills the child process; the worker requeues, the broker counts.
    worker = await start_worker("-Q", "qwork", "--processes", "1").started()
    poison = await app.asend_task("dt.poison", routing_key="qwork", result_queue=replies.queue)
    behind = [
        await app.asend_task(
            "dt.stamp", [f"behind-{i}"], routing_key="qwork", result_queue=replies.queue
        )
        for i in range(2)
    ]

    for result in behind:
        assert (await replies.wait(result.id, timeout=40))["state"] == "SUCCESS"
    dead = await take_one(connection, "qwork.dlq", timeout=20)
    assert json.loads(dead.body)["id"] == poison.id
    assert _death(dead, "qwork")["reason"] == "delivery_limit"
    assert worker.log().count("lost its process") == 3  # delivery_limit 2: 1 + 2 runs
    assert replies.states(poison.id) == []  # no reply: nothing ever finished it


@pytest.mark.slow
@pytest.mark.parametrize(
    "worker_args",
    [("--workers", "2", "-c", "1"), ("--processes", "1")],
    ids=["worker-processes-die", "pool-child-dies"],
)
async def test_a_poison_task_on_a_classic_queue_ends_in_the_dead_letter_queue(
    app: App,
    replies: Replies,
    connection: AbstractRobustConnection,
    start_worker,
    worker_args: tuple[str, ...],
) -> None:
    # Classic queues have no delivery limit: the worker counts redeliveries itself.
    worker = await start_worker("-Q", "work", *worker_args).started()
    poison = await app.asend_task("dt.poison", result_queue=replies.queue)
    behind = [
        await app.asend_task("dt.stamp", [f"behind-{i}"], result_queue=replies.queue)
        for i in range(2)
    ]

    for result in behind:
        assert (await replies.wait(result.id, timeout=40))["state"] == "SUCCESS"
    dead = await take_one(connection, "work.dlq", timeout=40)
    assert json.loads(dead.body)["id"] == poison.id
    assert dead.headers["amqpq-dead-letter-reason"] == "delivery_limit"
    assert dead.headers["amqpq-error-type"] == "DeliveryLimitExceeded"
    assert "amqpq-redeliveries" not in dead.headers
    await worker.wait_for_log("over the limit of 2: dead-lettered")

    def crashes() -> int:
        log = worker.log()
        return log.count("exited with 1; starting another") + log.count("lost its process")

    # The broker requeues a crashed worker's message as soon as its socket closes,
    # so the dead-lettering can be logged before the supervisor reports the exit.
    for _ in range(100):
        if crashes() >= 3:
            break
        await asyncio.sleep(0.1)
    log = worker.log()
    assert crashes() == 3  # delivery_limit 2: 1 + 2 runs, as on a quorum queue
    assert "requeued as redelivery 2 of 2" in log
    assert await queue_count(connection, "work") == 0
    assert replies.states(poison.id) == []


# -- priorities -----------------------------------------------------------------------------


async def test_higher_priority_tasks_run_first_on_a_priority_queue(
    app: App, replies: Replies, start_worker
) -> None:
    # Given a stopped worker and low, then high priority tasks waiting in the queue
    sent = []
    for priority in (1, 1, 1, 9, 9, 9):
        result = await app.asend_task(
            "dt.stamp",
            [f"p{priority}"],
            routing_key="prio",
            priority=priority,
            result_queue=replies.queue,
        )
        sent.append(result.id)
    # When a one-slot worker starts
    await start_worker("-Q", "prio", "-c", "1").started()
    done = [await replies.wait(task_id, timeout=20) for task_id in sent]
    # Then the high ones ran first
    order = [r["result"]["tag"] for r in sorted(done, key=lambda r: r["result"]["at"])]
    assert order == ["p9"] * 3 + ["p1"] * 3


# -- long delays ----------------------------------------------------------------------------


async def test_a_week_long_countdown_waits_in_the_top_level_and_longer_ones_are_capped(
    app: App, connection: AbstractRobustConnection
) -> None:
    await app.asend_task("dt.stamp", ["week"], countdown=7 * 24 * 3600, ignore_result=True)
    assert await delay_level_counts(connection) == {29: 1}  # 604,800,000 ms: bit 29 set
    # 20 days is more than one journey covers (2**30 - 1 ms, 12.4 days): the first leg
    await app.asend_task("dt.stamp", ["far"], countdown=20 * 24 * 3600, ignore_result=True)
    assert await delay_level_counts(connection) == {29: 2}
    assert await queue_count(connection, "work") == 0


async def test_a_task_that_arrives_before_its_eta_is_delayed_again_by_the_worker(
    declared: object, replies: Replies, connection: AbstractRobustConnection, start_worker
) -> None:
    # What happens after the first 12.4 days of a 20-day delay: the task arrives early.
    worker = await start_worker("-Q", "work", "-c", "1", "-l", "DEBUG").started()
    eta = datetime.now(UTC) + timedelta(days=20)
    body = {
        "protocol": 1,
        "id": "far-1",
        "task": "dt.stamp",
        "args": ["far"],
        "eta": eta.isoformat(),
    }
    plan = plan_delay(50, target_queue="work")
    channel = await connection.channel(publisher_confirms=True)
    level = await channel.get_exchange(plan.exchange)
    await level.publish(
        aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id="far-1",
            correlation_id="far-1",
            reply_to=replies.queue,
            headers={**plan.headers, "amqpq-task": "dt.stamp"},
        ),
        routing_key="work",
    )

    await worker.wait_for_log("task re-delayed task=dt.stamp id=far-1")
    assert await delay_level_counts(connection) == {29: 1}  # the next leg: the longest one
    assert await queue_count(connection, "work") == 0
    assert replies.states("far-1") == []
    assert MAX_DELAY_MS == 2**30 - 1
