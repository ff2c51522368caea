"""A result store that is down: at the worker's start, mid-run, and a worker killed before
its store write. Only Redis servers these tests start themselves are stopped (by PID)."""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from amqpq.app import App
from tests.support.processes import Processes, amqpq_env
from tests.support.stores import RedisServer, port_closed
from tests.support.waiting import eventually

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "results_topology.yaml"

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture
def redis_servers() -> Iterator[list[RedisServer]]:
    servers: list[RedisServer] = []
    yield servers
    for server in servers:
        server.kill()


def unacked(management: httpx.Client, vhost: str, queue: str) -> int:
    info = management.get(f"/queues/{quote(vhost, safe='')}/{queue}").json()
    return int(info.get("messages_unacknowledged", 0))


async def test_store_down_at_start_then_mid_run_nothing_is_lost(
    broker_url: str,
    vhost: str,
    management: httpx.Client,
    amqpq_processes: Processes,
    redis_servers: list[RedisServer],
) -> None:
    port = port_closed()
    store_url = f"redis://127.0.0.1:{port}/0"
    env = amqpq_env(broker_url, AMQPQ_RESULT_BACKEND=store_url)
    worker = amqpq_processes.start("worker", "-A", "results_tasks", env=env, cwd=HERE)
    await worker.started()
    app = App("rt", url=broker_url, topology=TOPOLOGY, result_backend=store_url)
    try:
        # Down at start: the task runs, its result cannot be stored, the message stays unacked.
        app.send_task("rt.add", [1, 1], task_id="down-at-start", ignore_result=True)
        await worker.wait_for_log("result of id=down-at-start (SUCCESS) not stored, attempt 2")
        eventually(lambda: unacked(management, vhost, "rwork") == 1, timeout=30, what="unacked")
        assert worker.process.poll() is None
        redis_servers.append(RedisServer(port).start())
        assert app.AsyncResult("down-at-start").get(timeout=60) == 2
        eventually(lambda: unacked(management, vhost, "rwork") == 0, timeout=30, what="acked")

        # Down mid-run: the same again, then the store comes back on the same port.
        redis_servers[0].kill()
        app.send_task("rt.add", [2, 3], task_id="down-mid-run", ignore_result=True)
        await worker.wait_for_log("result of id=down-mid-run (SUCCESS) not stored, attempt 2")
        assert worker.process.poll() is None
        redis_servers.append(RedisServer(port).start())
        assert app.AsyncResult("down-mid-run").get(timeout=60) == 5
    finally:
        app.close()


async def test_worker_killed_before_the_store_write_runs_the_task_again(
    broker_url: str,
    amqpq_processes: Processes,
    redis_servers: list[RedisServer],
    tmp_path: Path,
) -> None:
    # Deterministic: the store is down, so the worker is certainly between the task's end
    # and a successful store write when it is killed.
    port = port_closed()
    store_url = f"redis://127.0.0.1:{port}/0"
    env = amqpq_env(broker_url, AMQPQ_RESULT_BACKEND=store_url)
    runs = tmp_path / "runs"
    task_id = f"killed-{uuid.uuid4().hex[:6]}"
    first = amqpq_processes.start("worker", "-A", "results_tasks", env=env, cwd=HERE)
    await first.started()
    app = App("rt", url=broker_url, topology=TOPOLOGY, result_backend=store_url)
    try:
        app.send_task("rt.marked", [str(runs)], task_id=task_id, ignore_result=True)
        line = f"result of id={task_id} (SUCCESS) not stored, attempt 1"
        await first.wait_for_log(line)
        # SIGKILL the worker process that holds it (by the PID it logged), before any store
        # write succeeded; then the rest of the first worker's processes.
        holder = re.search(rf"amqpq\.worker\[(\d+)\] {re.escape(line)}", first.log())
        assert holder is not None
        os.kill(int(holder.group(1)), signal.SIGKILL)
        first.stop()
        # (the first worker's other process may already have run it again meanwhile)
        ran_before = runs.read_text().count("ran")
        redis_servers.append(RedisServer(port).start())
        second = amqpq_processes.start("worker", "-A", "results_tasks", env=env, cwd=HERE)
        await second.started()
        assert app.AsyncResult(task_id).get(timeout=60) == "marked"
        assert runs.read_text().count("ran") >= max(2, ran_before)  # ran again: never lost
    finally:
        app.close()
