"""Results by task id across processes, against the real broker and stores: a first process
starts a task with a chosen id, a worker runs it, two other processes read it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from amqpq.app import App
from amqpq.envelope import TaskState
from amqpq.errors import RemoteTaskError
from tests.support.processes import AmqpqProcess, Processes, amqpq_env
from tests.support.waiting import eventually

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "results_topology.yaml"

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def env(broker_url: str, shared_store_url: str) -> dict[str, str]:
    return amqpq_env(broker_url, AMQPQ_RESULT_BACKEND=shared_store_url)


@pytest.fixture
def start_worker(env: dict[str, str], amqpq_processes: Processes) -> Callable[..., AmqpqProcess]:
    def start(*args: str) -> AmqpqProcess:
        return amqpq_processes.start("worker", "-A", "results_tasks", *args, env=env, cwd=HERE)

    return start


def run_script(env: dict[str, str], script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, script, *args],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    return out


async def test_a_task_started_by_one_process_is_read_by_two_others(
    env: dict[str, str], start_worker: Callable[..., AmqpqProcess]
) -> None:
    await start_worker("-c", "2").started()
    task_id = f"order-42-{uuid.uuid4().hex[:6]}"
    # The readers wait before the task even exists: PENDING, then the store wakes them.
    readers = [run_script(env, "reader.py", task_id) for _ in range(2)]
    assert task_id in finished(run_script(env, "sender.py", task_id, "40", "2"))
    for reader in readers:
        assert json.loads(finished(reader)) == {"state": "SUCCESS", "value": 42, "again": 42}
    # And once more, from a third reader started after the fact.
    assert json.loads(finished(run_script(env, "reader.py", task_id)))["value"] == 42


async def test_every_state_is_stored_and_forget_deletes(
    broker_url: str,
    shared_store_url: str,
    start_worker: Callable[..., AmqpqProcess],
    tmp_path: Path,
) -> None:
    await start_worker("-c", "2").started()
    app = App("rt", url=broker_url, topology=TOPOLOGY, result_backend=shared_store_url)
    try:
        hold = tmp_path / "hold"
        hold.touch()
        app.send_task("rt.steps", [3], {"hold": str(hold)}, task_id="steps-1")
        handle = app.AsyncResult("steps-1")
        eventually(
            lambda: handle.state is TaskState.PROGRESS and handle.info == {"done": 3, "of": 3},
            timeout=30,
            what="PROGRESS with its meta in the store",
        )
        assert not handle.ready()
        hold.unlink()
        assert handle.get(timeout=30) == "3 steps"
        assert handle.successful()

        app.send_task("rt.fail", ["no stock"], task_id="fail-1")
        failed = app.AsyncResult("fail-1")
        with pytest.raises(RemoteTaskError, match="no stock"):
            failed.get(timeout=30)
        assert failed.failed()
        assert failed.traceback is not None
        assert "ValueError" in failed.traceback
        assert isinstance(failed.get(timeout=1, propagate=False), RemoteTaskError)

        assert app.AsyncResult("nobody-sent-this").state is TaskState.PENDING

        handle = app.AsyncResult("steps-1")
        handle.forget()
        assert app.AsyncResult("steps-1").state is TaskState.PENDING
    finally:
        app.close()


async def test_result_expires_per_task_and_per_call(
    broker_url: str, shared_store_url: str, start_worker: Callable[..., AmqpqProcess]
) -> None:
    await start_worker("-c", "2").started()
    app = App("rt", url=broker_url, topology=TOPOLOGY, result_backend=shared_store_url)
    try:
        app.send_task("rt.short_lived", task_id="short-1")  # result_expires=0.5 on the task
        assert app.AsyncResult("short-1").get(timeout=30) == "soon gone"
        app.send_task("rt.add", [1, 2], task_id="short-2", result_expires=0.5)
        assert app.AsyncResult("short-2").get(timeout=30) == 3
        app.send_task("rt.add", [2, 2], task_id="kept")
        assert app.AsyncResult("kept").get(timeout=30) == 4
        eventually(
            lambda: (
                app.AsyncResult("short-1").state is TaskState.PENDING
                and app.AsyncResult("short-2").state is TaskState.PENDING
            ),
            timeout=15,
            what="the short-lived results to expire",
        )
        assert app.AsyncResult("kept").state is TaskState.SUCCESS
    finally:
        app.close()
