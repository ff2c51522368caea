"""Celery's canvas on amqpq workers: an unchanged Celery producer's ``chain(...)``,
``link=`` and ``link_error=`` run with Celery's semantics, and its ``rpc://``
``AsyncResult.get()`` on the chain reads the last task's value; what cannot map (a chord,
a task no amqpq worker registers) is dead-lettered with the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aio_pika
import pytest
from celery import Celery, chain

from tests.celery.conftest import CeleryWorker
from tests.celery.test_celery_to_amqpq import wait_in_delay_levels
from tests.support.aio_clients import take
from tests.support.processes import AmqpqProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_a_celery_chain_of_three_runs_on_amqpq_and_the_caller_reads_its_value(
    start_worker: Callable[..., AmqpqProcess], shop: Celery
) -> None:
    await start_worker("-Q", "celery").started()
    add, mul = shop.signature("tasks.add"), shop.signature("tasks.mul")

    result = chain(add.clone((2, 2)), add.clone((4,)), mul.clone((10,))).apply_async()

    # Each result is prepended to the next task's arguments: (2 + 2 + 4) * 10.
    assert result.get(timeout=30) == 80
    assert result.parent.get(timeout=30) == 8
    assert result.parent.parent.get(timeout=30) == 4


async def test_a_chain_s_next_task_keeps_its_options_and_is_a_message_a_celery_worker_runs(
    start_worker: Callable[..., AmqpqProcess],
    shop: Celery,
    celery_worker: Callable[[str], CeleryWorker],
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    # Given an amqpq worker on "celery" and a real Celery worker on "legacy" ...
    await start_worker("-Q", "celery").started()
    legacy = celery_worker("legacy")
    add = shop.signature("tasks.add")
    later = add.clone((10,)).set(queue="legacy", countdown=2)

    # ... the amqpq worker runs the first task and sends the next as Celery would:
    result = chain(add.clone((1, 2)), later).apply_async()

    await wait_in_delay_levels(amqp)  # countdown: it waits on the broker
    assert result.get(timeout=60) == 13  # run by the Celery worker, answered to the caller
    assert f"tasks.add[{result.id}] succeeded" in legacy.log()


async def test_an_immutable_signature_in_a_celery_chain_ignores_the_parent_result(
    start_worker: Callable[..., AmqpqProcess], shop: Celery
) -> None:
    await start_worker("-Q", "celery").started()
    add = shop.signature("tasks.add")

    result = chain(add.clone((1, 1)), shop.signature("tasks.add", args=(5, 5), immutable=True))

    assert result.apply_async().get(timeout=30) == 10


async def test_a_member_that_retries_keeps_the_celery_chain_going(
    start_worker: Callable[..., AmqpqProcess], shop: Celery
) -> None:
    await start_worker("-Q", "celery").started()

    # tasks.flaky retries twice (self.retry) and returns how often it retried.
    flaky = shop.signature("tasks.flaky", args=(2,))
    result = chain(flaky, shop.signature("tasks.add", args=(40,))).apply_async()

    assert result.get(timeout=30) == 42


async def test_a_failing_member_stops_a_celery_chain_and_the_caller_gets_its_error(
    start_worker: Callable[..., AmqpqProcess], shop: Celery, tmp_path: Path
) -> None:
    await start_worker("-Q", "celery").started()
    written = tmp_path / "after-failure.txt"
    fail = shop.signature("tasks.fail", args=("disk full",))
    after = shop.signature("tasks.note", args=(str(written),))

    result = chain(fail, after).apply_async()

    with pytest.raises(ValueError, match="disk full"):
        result.get(timeout=30)
    assert lines(written) == []  # the rest of the chain never ran


async def test_link_and_link_error_callbacks_run_with_celery_semantics(
    start_worker: Callable[..., AmqpqProcess], shop: Celery, tmp_path: Path
) -> None:
    await start_worker("-Q", "celery").started()
    succeeded, failed = tmp_path / "succeeded.txt", tmp_path / "failed.txt"
    note_success = shop.signature("tasks.note", args=(str(succeeded),))
    note_failure = shop.signature("tasks.note", args=(str(failed),))

    ok = shop.send_task("tasks.add", args=(1, 2), link=note_success, link_error=note_failure)
    bad = shop.send_task("tasks.fail", args=("boom",), link=note_success, link_error=note_failure)

    assert ok.get(timeout=30) == 3
    with pytest.raises(ValueError, match="boom"):
        bad.get(timeout=30)
    # link: the result prepended; link_error: the failed task's id (Celery's errback call).
    eventually(lambda: lines(succeeded) == ["3"] and lines(failed) == [bad.id])


async def test_a_celery_chord_member_is_dead_lettered_naming_the_chord(
    start_worker: Callable[..., AmqpqProcess],
    shop: Celery,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    await start_worker("-Q", "celery").started()

    # What Celery sends for each member of a chord's header: the body in embed.chord.
    member = shop.send_task("tasks.add", args=(1, 2), chord=shop.signature("tasks.mul"))

    with pytest.raises(Exception, match=r"embed\.chord"):
        member.get(timeout=30)
    [dead] = await take(await amqp.channel(), "celery.dlq")
    assert dead.headers["amqpq-dead-letter-reason"] == "unsupported_workflow"
    assert "embed.chord" in str(dead.headers["amqpq-error-message"])
    # The worker keeps running.
    assert shop.send_task("tasks.add", args=(2, 3)).get(timeout=30) == 5


async def test_a_chain_naming_a_task_amqpq_does_not_register_is_dead_lettered_before_it_runs(
    start_worker: Callable[..., AmqpqProcess],
    shop: Celery,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    await start_worker("-Q", "celery").started()
    add = shop.signature("tasks.add")

    result = chain(add.clone((1, 2)), shop.signature("tasks.nowhere")).apply_async()

    with pytest.raises(Exception, match=r"tasks\.nowhere"):
        result.get(timeout=30)  # the last task is answered too: the caller does not hang
    [dead] = await take(await amqp.channel(), "celery.dlq")
    assert dead.headers["amqpq-dead-letter-reason"] == "unsupported_workflow"
    assert "'tasks.nowhere'" in str(dead.headers["amqpq-error-message"])
