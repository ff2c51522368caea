"""A newcomer's Celery habits on a real worker: a bare ``self.retry()``, ``@shared_task``."""

from __future__ import annotations

import pytest

from tests.support.aio_clients import TaskClient

pytestmark = pytest.mark.rabbitmq

POOLS = {
    "threads": ("--pool", "threads", "-c", "2"),
    "async": ("--pool", "async", "-c", "2"),
    "solo": ("--pool", "solo"),
    "processes": ("--processes", "1"),
}


@pytest.mark.parametrize("pool", sorted(POOLS))
async def test_a_bare_retry_retries_on_every_pool(
    pool: str, start_worker, client: TaskClient
) -> None:
    # Given a worker of that pool
    await start_worker("-Q", "work", *POOLS[pool], app="newcomer_tasks").started()

    # When bound tasks call self.retry(countdown=...) without raise (sync and async)
    sync_id = await client.send("nc.retry_bare")
    async_id = await client.send("nc.aretry_bare")

    # Then each stops there, is retried through the broker and succeeds the second time
    for task_id in (sync_id, async_id):
        done = await client.wait_reply(task_id)
        assert (done["state"], done["result"]) == ("SUCCESS", "retried 1")
        assert [r["retries"] for r in client.replies[task_id] if r["state"] == "RETRY"] == [1]


async def test_a_shared_task_declared_before_the_app_runs_on_the_worker(
    start_worker, client: TaskClient
) -> None:
    # Given a worker whose -A module imports a reusable module's @shared_task before it
    # creates its App
    await start_worker("-Q", "work", "-c", "2", app="newcomer_tasks").started()

    # When the shared task is sent by its name (module.function)
    task_id = await client.send("newcomer_shared.multiply", [6, 7])

    # Then the worker's App has it and runs it
    done = await client.wait_reply(task_id)
    assert (done["state"], done["result"]) == ("SUCCESS", 42)
