"""Celery producers -> amqpq workers: a Celery 5 app's unchanged ``send_task`` / ``delay``
runs on an amqpq worker, and its ``rpc://`` ``AsyncResult.get()`` reads the outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aio_pika
import pytest
from celery import Celery, group
from celery.exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded

from amqpq.wire import DELAY_LEVELS, delay_queue_name
from tests.support.aio_clients import queue_count, take
from tests.support.cli import run_cli, run_cli_json
from tests.support.processes import AmqpqProcess, Processes, amqpq_env
from tests.support.waiting import eventually

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.timeout(120)


async def test_send_task_and_delay_with_positional_and_keyword_arguments(
    start_worker: Callable[..., AmqpqProcess], shop: Celery
) -> None:
    await start_worker("-Q", "celery").started()

    by_name = shop.send_task("tasks.add", args=(3, 4))
    keywords = shop.send_task("tasks.greet", args=("ada",), kwargs={"punctuation": "?"})
    delayed = shop.tasks["tasks.add"].delay(20, y=22)

    assert by_name.get(timeout=30) == 7
    assert keywords.get(timeout=30) == "hello ada?"
    assert delayed.get(timeout=30) == 42
    assert delayed.state == "SUCCESS"


async def test_a_failing_task_raises_its_error_with_its_message_in_the_celery_caller(
    start_worker: Callable[..., AmqpqProcess], shop: Celery
) -> None:
    await start_worker("-Q", "celery").started()

    result = shop.send_task("tasks.fail", args=("disk full",))

    with pytest.raises(ValueError, match="disk full"):
        result.get(timeout=30)
    assert result.state == "FAILURE"
    assert "ValueError: disk full" in (result.traceback or "")


async def test_arguments_that_fail_validation_fail_the_celery_call(
    start_worker: Callable[..., AmqpqProcess], shop: Celery
) -> None:
    await start_worker("-Q", "celery").started()

    result = shop.send_task("tasks.add", args=("three", 4))

    with pytest.raises(Exception, match="valid integer") as raised:
        result.get(timeout=30)
    assert type(raised.value).__name__ == "ArgumentsError"


async def test_a_countdown_waits_on_the_broker_and_never_runs_early(
    start_worker: Callable[..., AmqpqProcess],
    shop: Celery,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    await start_worker("-Q", "celery").started()

    sent_at = time.time()
    result = shop.send_task("tasks.clock", countdown=4)

    # The worker does not hold it: it waits in amqpq's delay levels, on the broker.
    await wait_in_delay_levels(amqp)
    ran_at = result.get(timeout=30)
    assert ran_at >= sent_at + 4 - 0.05  # never early (one machine, one clock)


async def wait_in_delay_levels(amqp: aio_pika.abc.AbstractConnection) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        for level in range(DELAY_LEVELS):
            if await queue_count(amqp, delay_queue_name("amqpq", level)):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the delayed task never reached amqpq's delay levels")


async def test_an_expired_task_is_not_run_and_the_caller_sees_it_revoked(
    start_worker: Callable[..., AmqpqProcess],
    shop: Celery,
    broker_url: str,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    await start_worker("-Q", "celery").started()

    # Due in 3 s, expired after 1 s: it waits on the broker, then arrives expired.
    result = shop.send_task("tasks.clock", countdown=3, expires=1)

    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=30)
    [dead] = await take(await amqp.channel(), "celery.dlq")
    assert dead.headers["amqpq-dead-letter-reason"] == "expired"
    assert dead.headers["task"] == "tasks.clock"


async def test_a_task_retried_from_inside_runs_again_and_returns_to_the_caller(
    start_worker: Callable[..., AmqpqProcess], shop: Celery
) -> None:
    await start_worker("-Q", "celery").started()

    result = shop.send_task("tasks.flaky", args=(2,))

    assert result.get(timeout=30) == 2


@pytest.mark.parametrize("pool", ["threads", "processes"])
async def test_a_celery_hard_time_limit_stops_the_task(
    start_worker: Callable[..., AmqpqProcess], shop: Celery, pool: str
) -> None:
    await start_worker("-Q", "celery", "--pool", pool, "-c", "1").started()

    result = shop.send_task("tasks.busy", args=(30,), time_limit=0.5)

    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)


@pytest.mark.parametrize("pool", ["threads", "processes"])
async def test_a_celery_time_limit_stops_the_task(
    start_worker: Callable[..., AmqpqProcess], shop: Celery, pool: str
) -> None:
    await start_worker("-Q", "celery", "--pool", pool, "-c", "1").started()

    result = shop.send_task("tasks.busy", args=(30,), soft_time_limit=0.5)

    with pytest.raises(SoftTimeLimitExceeded):
        result.get(timeout=30)


async def test_a_pickled_message_is_dead_lettered_unread_and_the_worker_keeps_running(
    start_worker: Callable[..., AmqpqProcess],
    shop: Celery,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    await start_worker("-Q", "celery").started()

    pickled = shop.send_task("tasks.add", args=(1, 2), serializer="pickle")

    with pytest.raises(Exception, match="pickle") as raised:
        pickled.get(timeout=30)
    assert type(raised.value).__name__ == "UnsupportedCeleryMessage"
    [dead] = await take(await amqp.channel(), "celery.dlq")
    assert dead.headers["amqpq-dead-letter-reason"] == "unsupported_serializer"
    assert "JSON only" in str(dead.headers["amqpq-error-message"])
    assert dead.content_type == "application/x-python-serialize"
    assert shop.send_task("tasks.add", args=(1, 2)).get(timeout=30) == 3


async def test_a_protocol_1_message_is_dead_lettered_with_the_reason(
    start_worker: Callable[..., AmqpqProcess],
    make_celery: Callable[..., Celery],
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    await start_worker("-Q", "celery").started()
    old_style = make_celery(task_protocol=1)

    result = old_style.send_task("tasks.add", args=(1, 2))

    with pytest.raises(Exception, match="protocol 1"):
        result.get(timeout=30)
    [dead] = await take(await amqp.channel(), "celery.dlq")
    assert dead.headers["amqpq-dead-letter-reason"] == "unsupported_protocol"
    assert make_celery().send_task("tasks.add", args=(2, 2)).get(timeout=30) == 4


async def test_a_pickled_protocol_1_message_is_refused_unread(
    start_worker: Callable[..., AmqpqProcess],
    make_celery: Callable[..., Celery],
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    await start_worker("-Q", "celery").started()
    old_style = make_celery(task_protocol=1)

    result = old_style.send_task("tasks.add", args=(1, 2), serializer="pickle")

    with pytest.raises(Exception, match="never unpickles"):
        result.get(timeout=30)
    [dead] = await take(await amqp.channel(), "celery.dlq")
    assert dead.headers["amqpq-dead-letter-reason"] == "unsupported_serializer"


async def test_an_amqpq_worker_takes_over_a_queue_celery_declared_itself_in_place(
    broker_url: str,
    amqpq_processes: Processes,
    make_celery: Callable[..., Celery],
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    # Given Celery's queue as Celery declares it (no dead-lettering arguments) ...
    declaring = make_celery(task_queues=None)
    with declaring.connection_for_write() as connection:
        declaring.amqp.queues["celery"].bind(connection.default_channel).declare()
    # ... an amqpq worker whose file says amqpq_arguments: false starts on it ...
    worker = amqpq_processes.start(
        "worker", "-A", "adopted_tasks", "-Q", "celery", env=amqpq_env(broker_url), cwd=HERE
    )
    await worker.started()

    # ... and runs what an unchanged Celery producer (which declares the queue) sends.
    assert declaring.send_task("tasks.add", args=(2, 3)).get(timeout=30) == 5
    bad = declaring.send_task("tasks.add", args=("two", 3))
    with pytest.raises(Exception, match="valid integer"):
        bad.get(timeout=30)
    [dead] = await take(await amqp.channel(), "celery.dlq")
    assert dead.headers["amqpq-dead-letter-reason"] == "bad_arguments"


def test_dlq_show_and_replay_read_a_celery_dead_letter_by_its_headers(
    start_worker: Callable[..., AmqpqProcess], shop: Celery, broker_url: str
) -> None:
    worker = start_worker("-Q", "celery").started_blocking()
    failed = shop.send_task("tasks.fail", args=("out of paper",))
    with pytest.raises(ValueError, match="out of paper"):
        failed.get(timeout=30)
    env = amqpq_env(broker_url)
    topology = str(HERE / "celery_topology.yaml")

    [letter] = eventually(
        lambda: run_cli_json(env, "dlq", "show", "celery", "-f", topology)["letters"],
        what="the dead letter",
    )
    assert (letter["task"], letter["task_id"], letter["reason"]) == (
        "tasks.fail",
        failed.id,
        "failed",
    )

    replayed = run_cli(env, "dlq", "replay", "celery", "-f", topology)
    assert replayed.returncode == 0, replayed.stderr
    worker.wait_for_log_blocking(f"id={failed.id}", count=2)  # it ran again on the worker


async def test_a_celery_group_runs_on_amqpq_workers_and_its_results_come_back_in_order(
    start_worker: Callable[..., AmqpqProcess], shop: Celery
) -> None:
    await start_worker("-Q", "celery", "-c", "2").started()

    results = group(shop.signature("tasks.add", args=(i, i)) for i in range(5)).apply_async()

    assert results.get(timeout=30) == [0, 2, 4, 6, 8]


async def test_an_unknown_task_fails_the_celery_call_instead_of_leaving_it_waiting(
    start_worker: Callable[..., AmqpqProcess], shop: Celery
) -> None:
    await start_worker("-Q", "celery").started()

    result = shop.send_task("tasks.nobody_has_this")

    with pytest.raises(Exception, match="nobody_has_this") as raised:
        result.get(timeout=30)
    assert type(raised.value).__name__ == "TaskNotFoundError"
