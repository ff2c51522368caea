"""The worker against the real broker: real ``amqpq worker`` processes, a plain AMQP client."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.support.aio_clients import TaskClient

pytestmark = pytest.mark.rabbitmq


async def test_a_task_runs_and_its_reply_arrives(start_worker, client: TaskClient) -> None:
    # Given a worker on the test topology
    await start_worker("-Q", "work", "-c", "2").started()

    # When a plain client sends tasks: sync, async, bound with progress, failing
    add = await client.send("wt.add", [3, 4])
    aadd = await client.send("wt.aadd", [20, 22])
    progress = await client.send("wt.progress", [2])
    failing = await client.send("wt.fail", ["boom"])

    # Then each caller gets its reply
    assert (await client.wait_reply(add))["result"] == 7
    assert (await client.wait_reply(aadd))["result"] == 42
    done = await client.wait_reply(progress)
    assert done["result"] == f"{progress} done"
    steps = [r["meta"]["step"] for r in client.replies[progress] if r["state"] == "PROGRESS"]
    assert steps == [1, 2]
    failure = await client.wait_reply(failing)
    assert failure["state"] == "FAILURE"
    assert failure["error"]["type"] == "ValueError"
    assert failure["error"]["message"] == "boom"
    assert "raise ValueError(message)" in failure["error"]["traceback"]
    # And the failed task is in the dead-letter queue with its reason, the queue is empty
    [dead] = await client.take_all("work.dlq", 1)
    assert dead.headers["amqpq-dead-letter-reason"] == "failed"
    assert dead.headers["amqpq-error-type"] == "ValueError"
    assert json.loads(dead.body)["id"] == failing
    assert await client.ready_count("work") == 0


async def test_async_pool_runs_async_and_sync_tasks(start_worker, client: TaskClient) -> None:
    worker = await start_worker("-Q", "work", "--pool", "async", "-c", "4").started()
    ids = [await client.send("wt.aadd", [i, i]) for i in range(6)]
    sync_id = await client.send("wt.add", [1, 1])
    assert [(await client.wait_reply(i))["result"] for i in ids] == [0, 2, 4, 6, 8, 10]
    assert (await client.wait_reply(sync_id))["result"] == 2
    assert "pool=async concurrency=4 prefetch=4" in worker.log()


async def test_solo_pool_runs_tasks_on_the_worker_thread_one_at_a_time(
    start_worker, client: TaskClient
) -> None:
    # Given a solo worker: sync tasks run between its network I/O, with no hand-off
    worker = await start_worker("-Q", "work", "--pool", "solo").started()
    assert "pool=solo concurrency=1 prefetch=1" in worker.log()

    # Then plain, async, bound (progress) and failing tasks behave as on the threads pool
    add = await client.send("wt.add", [3, 4])
    aadd = await client.send("wt.aadd", [20, 22])
    progress = await client.send("wt.progress", [2])
    failing = await client.send("wt.fail", ["boom"])
    assert (await client.wait_reply(add))["result"] == 7
    assert (await client.wait_reply(aadd))["result"] == 42
    assert (await client.wait_reply(progress))["result"] == f"{progress} done"
    steps = [r["meta"]["step"] for r in client.replies[progress] if r["state"] == "PROGRESS"]
    assert steps == [1, 2]
    assert (await client.wait_reply(failing))["error"]["type"] == "ValueError"
    # And a task with a time limit still gets it (it runs in a thread, where a limit can fire)
    assert (await client.wait_reply(await client.send("wt.soft")))["result"] == "cleaned up"


async def test_solo_pool_with_more_than_one_slot_is_a_usage_error(start_worker) -> None:
    worker = start_worker("-Q", "work", "--pool", "solo", "-c", "2")
    assert await worker.wait() == 2
    assert "--pool solo runs one task at a time" in worker.log()
    assert "Traceback" not in worker.log()


async def test_bad_input_is_dead_lettered_and_the_worker_keeps_answering(
    start_worker, client: TaskClient
) -> None:
    worker = await start_worker("-Q", "work", "-c", "1", "--max-body-size", "1KiB").started()
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

    # When seven kinds of bad input arrive
    await client.publish_raw(b"{not json", correlation_id="bad-json")
    await client.publish_raw(
        b'{"id": "x", "task": "wt.add", "args": ["\xff"]}', correlation_id="bad-utf8"
    )
    await client.publish_raw(b'{"id": "env", "task": 42, "args": {}}', correlation_id="env")
    unknown = await client.send("wt.nope", [1])
    bad_args = await client.send("wt.add", ["three", 4])
    expired = await client.send("wt.add", [1, 2], expires=past)
    too_large = await client.send("wt.add", [1, 2], padding="x" * 2048)
    # Then a good task still gets its answer
    good = await client.send("wt.add", [5, 5])
    assert (await client.wait_reply(good))["result"] == 10

    dead = await client.take_all("work.dlq", 7)
    reasons = Counter(m.headers["amqpq-dead-letter-reason"] for m in dead)
    assert reasons == Counter(
        {
            "bad_json": 2,
            "bad_envelope": 1,
            "unknown_task": 1,
            "bad_arguments": 1,
            "expired": 1,
            "too_large": 1,
        }
    )
    for message in dead:
        assert message.headers["amqpq-original-queue"] == "work"
        assert message.headers["amqpq-error-type"]
        assert message.headers["amqpq-dead-at"]
    # And callers with a reply_to hear about it
    assert (await client.wait_reply(unknown))["state"] == "REJECTED"
    rejected = await client.wait_reply(bad_args)
    assert rejected["state"] == "REJECTED"
    assert rejected["error"]["type"] == "ArgumentsError"
    assert (await client.wait_reply(expired))["state"] == "EXPIRED"
    assert (await client.wait_reply(too_large))["state"] == "REJECTED"
    assert (await client.wait_reply("bad-json"))["error"]["type"] == "DecodeError"
    assert await client.ready_count("work") == 0
    assert worker.process.poll() is None


@pytest.mark.slow
async def test_sigkill_mid_task_redelivers_and_the_caller_gets_the_result(
    start_worker, client: TaskClient
) -> None:
    first = await start_worker("-Q", "work", "-c", "1").started()
    task_id = await client.send("wt.sleep", [1.0, "after a crash"])
    await client.wait_reply(task_id, {"STARTED"})

    first.signal(signal.SIGKILL)
    await first.wait()
    await start_worker("-Q", "work", "-c", "1").started()

    reply = await client.wait_reply(task_id)
    assert reply["state"] == "SUCCESS"
    assert reply["result"] == "slept after a crash"
    assert await client.ready_count("work") == 0


@pytest.mark.slow
async def test_sigterm_mid_task_finishes_acks_and_exits_0(start_worker, client: TaskClient) -> None:
    worker = await start_worker("-Q", "work", "-c", "1").started()
    task_id = await client.send("wt.sleep", [0.8, "before stopping"])
    await client.wait_reply(task_id, {"STARTED"})

    worker.signal(signal.SIGTERM)

    assert (await client.wait_reply(task_id))["result"] == "slept before stopping"
    assert await worker.wait() == 0
    assert "warm shutdown" in worker.log()
    assert await client.ready_count("work") == 0  # acked: nothing came back


async def test_acks_coalesced_under_load_settle_every_message_exactly_once(
    start_worker, client: TaskClient
) -> None:
    # Given a worker with 8 slots (its acks may leave as one basic.ack with multiple)
    worker = await start_worker("-Q", "work", "-c", "8").started()
    # When 300 tasks arrive at once, every seventh one failing (dead-lettered by a reject)
    ids = [
        await client.send("wt.fail", ["boom"])
        if i % 7 == 0
        else await client.send("wt.add", [i, 1])
        for i in range(300)
    ]
    replies = [await client.wait_reply(i) for i in ids]
    assert [r["state"] for r in replies].count("FAILURE") == len(range(0, 300, 7))
    # Then, once stopped, nothing unacked comes back, and no settle was refused or dropped
    worker.signal(signal.SIGTERM)
    assert await worker.wait() == 0
    assert await client.ready_count("work") == 0
    assert len(await client.take_all("work.dlq", len(range(0, 300, 7)))) == len(range(0, 300, 7))
    assert "dropped" not in worker.log()
    assert "PRECONDITION_FAILED" not in worker.log()


@pytest.mark.slow
async def test_second_signal_stops_now_and_the_task_goes_back(
    start_worker, client: TaskClient
) -> None:
    worker = await start_worker("-Q", "work", "-c", "1").started()
    task_id = await client.send("wt.sleep", [30, "never"])
    await client.wait_reply(task_id, {"STARTED"})

    worker.signal(signal.SIGTERM)
    await worker.wait_for_log("warm shutdown")
    worker.signal(signal.SIGINT)

    assert await worker.wait() != 0
    assert "stopping now" in worker.log()
    assert await client.ready_count("work") == 1


@pytest.mark.slow
async def test_single_slot_workers_never_hoard(start_worker, client: TaskClient) -> None:
    one = await start_worker("-Q", "work", "-c", "1").started()
    two = await start_worker("-Q", "work", "-c", "1").started()
    ids = [await client.send("wt.sleep", [0.6, str(i)]) for i in range(4)]

    # While two tasks run (one per worker), the other two wait in the queue, unclaimed
    started = [await client.wait_reply(i, {"STARTED"}) for i in ids[:2]]
    assert {str(r["worker"]).rsplit(":", 1)[1] for r in started} == {str(one.pid), str(two.pid)}
    assert await client.ready_count("work") == 2

    replies = [await client.wait_reply(i) for i in ids]
    per_worker = Counter(r["worker"] for r in replies)
    assert sorted(per_worker.values()) == [2, 2]


@pytest.mark.slow
async def test_a_connection_closed_by_the_broker_is_restored_and_consuming(
    start_worker, client: TaskClient, management: httpx.Client, vhost: str
) -> None:
    api = httpx.AsyncClient(base_url=str(management.base_url), auth=management.auth, timeout=10)
    worker = await start_worker("-Q", "work", "-c", "1").started()
    async with api:
        name = await _worker_connection(api, vhost)
        # A task in flight when the connection drops: its late ack would be stale
        running = await client.send("wt.sleep", [1.5, "across a reconnect"])
        await client.wait_reply(running, {"STARTED"})
        response = await api.delete(
            f"/connections/{quote(name, safe='')}",
            headers={"X-Reason": "test: closed by an operator"},
        )
        response.raise_for_status()

    # The worker reconnects and consumes again
    await worker.wait_for_log("reconnected")
    after = await client.send("wt.add", [2, 3])
    assert (await client.wait_reply(after))["result"] == 5
    # The task in flight finishes and replies; its ack is dropped (the broker requeued the
    # message), and the redelivered copy is acked without running the task twice
    assert (await client.wait_reply(running))["result"] == "slept across a reconnect"
    await worker.wait_for_log("ack dropped")
    await worker.wait_for_log("acked without running it again")
    assert await client.ready_count("work") == 0
    assert [r["state"] for r in client.replies[running]] == ["STARTED", "SUCCESS"]
    assert await client.ready_count("work") == 0


async def _worker_connection(api: httpx.AsyncClient, vhost: str) -> str:
    for _ in range(100):
        response = await api.get(f"/vhosts/{quote(vhost, safe='')}/connections")
        response.raise_for_status()
        for connection in response.json():
            provided = connection.get("user_provided_name") or connection.get(
                "client_properties", {}
            ).get("connection_name", "")
            if provided.startswith("amqpq worker "):
                return str(connection["name"])
        await asyncio.sleep(0.1)
    raise AssertionError("the worker's connection never showed in the management API")


@pytest.mark.slow
async def test_processes_pool_replaces_dead_children_and_enforces_time_limits(
    start_worker, client: TaskClient, tmp_path: Path
) -> None:
    worker = await start_worker("-Q", "work", "--processes", "1").started()
    assert "pool=processes concurrency=1 prefetch=1" in worker.log()

    # A child that dies mid-task is replaced and its message redelivered
    marker = tmp_path / "exited-once"
    crashed = await client.send("wt.exit_once", [str(marker)])
    reply = await client.wait_reply(crashed)
    assert reply["state"] == "SUCCESS"
    assert reply["result"] == f"survived {marker.read_text()}"
    assert "lost its process" in worker.log()

    # A hard time limit kills the child and fails the task
    limited = await client.send("wt.forever")
    failure = await client.wait_reply(limited)
    assert failure["state"] == "FAILURE"
    assert failure["error"]["type"] == "TimeLimitExceeded"

    # A soft limit is raised inside the task, which can clean up
    assert (await client.wait_reply(await client.send("wt.soft")))["result"] == "cleaned up"
    # and the (replaced) child still runs plain tasks
    assert (await client.wait_reply(await client.send("wt.add", [1, 2])))["result"] == 3


@pytest.mark.slow
async def test_retries_go_through_the_broker_and_end_in_the_dead_letter_queue(
    start_worker, client: TaskClient
) -> None:
    await start_worker("-Q", "work,qwork", "-c", "2").started()

    flaky = await client.send("wt.flaky", [2], queue="qwork")
    done = await client.wait_reply(flaky)
    assert done["state"] == "SUCCESS"
    assert done["result"] == 2
    assert [r["retries"] for r in client.replies[flaky] if r["state"] == "RETRY"] == [1, 2]

    broken = await client.send("wt.always_broken")
    failure = await client.wait_reply(broken)
    assert failure["state"] == "FAILURE"
    assert failure["error"]["type"] == "ConnectionError"
    [dead] = await client.take_all("work.dlq", 1)
    assert dead.headers["amqpq-dead-letter-reason"] == "max_retries_exceeded"
    assert json.loads(dead.body)["retries"] == 1


@pytest.mark.slow
async def test_a_task_with_a_future_eta_is_delayed_on_the_broker(
    start_worker, client: TaskClient
) -> None:
    worker = await start_worker("-Q", "work", "-c", "1", "-l", "DEBUG").started()
    eta = datetime.now(UTC) + timedelta(seconds=0.7)
    task_id = await client.send("wt.add", [1, 1], eta=eta.isoformat())

    assert (await client.wait_reply(task_id))["result"] == 2
    assert datetime.now(UTC) >= eta
    assert "task re-delayed" in worker.log()


@pytest.mark.slow
async def test_with_several_addresses_the_worker_fails_over_after_a_connection_loss(
    start_worker, client: TaskClient, management: httpx.Client, vhost: str, broker_url: str
) -> None:
    # Given two addresses, the first of which never answers
    dead = broker_url.replace(":5672/", ":1/")
    worker = await start_worker("-Q", "work", "-c", "1", "--url", f"{dead},{broker_url}").started()
    assert (await client.wait_reply(await client.send("wt.add", [1, 1])))["result"] == 2

    # When its connection is closed, it tries the next address of its own order (with two,
    # whichever way they were shuffled: the dead one), then the live one again, and
    # consumes again
    api = httpx.AsyncClient(base_url=str(management.base_url), auth=management.auth, timeout=10)
    async with api:
        name = await _worker_connection(api, vhost)
        (await api.delete(f"/connections/{quote(name, safe='')}")).raise_for_status()
    await worker.wait_for_log("reconnecting, next amqp://guest@127.0.0.1:1/")
    await worker.wait_for_log("reconnected")
    assert (await client.wait_reply(await client.send("wt.add", [2, 2])))["result"] == 4


async def test_a_topology_conflict_stops_the_worker_with_one_line_and_exit_5(
    start_worker, client: TaskClient
) -> None:
    # Given a queue "work" that exists with other arguments than the file's
    await client.channel.declare_queue("work", durable=True, arguments={"x-max-length": 7})

    worker = start_worker("-Q", "work")

    assert await worker.wait() == 5
    assert "error:" in worker.log()
    assert "Traceback" not in worker.log()


async def test_an_app_that_cannot_be_found_is_a_usage_error(start_worker) -> None:
    worker = start_worker(app="no_such_module_here")
    assert await worker.wait() == 2
    assert "no module named 'no_such_module_here'" in worker.log()


@pytest.mark.slow
async def test_workers_n_runs_n_worker_processes_under_one_command(
    start_worker, client: TaskClient
) -> None:
    supervisor = start_worker("-Q", "work", "-c", "1", "--workers", "2")
    await supervisor.wait_for_log("supervisor started workers=2")
    ids = [await client.send("wt.sleep", [0.3, str(i)]) for i in range(4)]
    replies = [await client.wait_reply(i) for i in ids]
    assert len({r["worker"] for r in replies}) == 2  # both children took work

    supervisor.signal(signal.SIGTERM)
    assert await supervisor.wait() == 0
    assert supervisor.log().count("worker stopped") == 2
