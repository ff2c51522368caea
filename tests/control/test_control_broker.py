"""Operating workers on the real broker: inspect, revoke, events, metrics, hooks, limits."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from amqpq.app import App
from amqpq.envelope import TaskState
from amqpq.errors import ResultTimeoutError, TaskRevokedError
from amqpq.rpc import AsyncResult
from amqpq.topology.loader import load_topology
from amqpq.transport.declare import declare_topology
from tests.support.cli import run_cli, run_cli_json
from tests.support.processes import reconnected_marker
from tests.support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
# The CLI runs from this folder, as an operator runs it beside the tasks module.
cli = partial(run_cli, cwd=HERE)
cli_json = partial(run_cli_json, cwd=HERE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _active(env: dict[str, str]) -> list[dict[str, Any]]:
    done = cli(env, "inspect", "--json", "--timeout", "0.5")
    if done.returncode != 0:
        return []
    return [task for w in json.loads(done.stdout)["workers"] for task in w["active"]]


def test_inspect_shows_a_live_worker_its_active_task_and_the_consumer_timeout_warning(
    start_worker, app: App, env: dict[str, str]
) -> None:
    # Given a threads worker running a long task
    worker = start_worker("-c", "2").started_blocking()
    running = app.send_task("ct.sleep", [10])  # outlasts the CLI calls below on a busy machine
    eventually(lambda: running.state is TaskState.STARTED)

    # When an operator inspects the workers
    [found] = cli_json(env, "inspect")["workers"]

    # Then it sees the worker, what it can run, what it runs now and its counters
    assert found["worker"] == f"{socket.gethostname()}:{worker.pid}"
    assert found["pid"] == worker.pid
    assert found["pool"] == "threads"
    assert found["concurrency"] == found["prefetch"] == 2
    assert found["queues"] == ["work"]
    assert {"ct.add", "ct.sleep", "ct.limited"} <= set(found["registered"])
    assert found["rate_limits"] == {"ct.limited": "5/s"}
    [active] = found["active"]
    assert active["id"] == running.id
    assert active["task"] == "ct.sleep"
    assert active["runtime"] >= 0
    assert set(found["stats"]) >= {
        "processed",
        "failed",
        "retried",
        "rejected",
        "uptime",
        "reconnects",
    }
    # And the text form names the same
    text = cli(env, "inspect").stdout
    assert running.id in text
    assert "ct.sleep" in text

    # And --terminate on a threads pool says it cannot
    revoked = cli_json(env, "revoke", running.id, "--terminate")
    [answer] = revoked["workers"]
    assert answer["running"] == [running.id]
    assert "cannot terminate on the threads pool" in answer["not_terminated"][running.id]
    assert running.get(timeout=20) == "slept"  # it ran to the end

    # And the worker warned about the task whose time limit exceeds consumer_timeout
    worker.wait_for_log_blocking("task ct.long has a time limit of 3600s, longer than the broker's")

    # When the worker is gone, inspect says nobody answered and exits 1
    assert worker.terminate() == 0
    nobody = cli(env, "inspect", "--timeout", "0.3")
    assert nobody.returncode == 1
    assert "no workers answered" in nobody.stderr


def test_revoked_tasks_queued_or_delayed_are_skipped_and_answered_revoked(
    start_worker, app: App, env: dict[str, str]
) -> None:
    # Given a one-slot worker kept busy, a task queued behind it and one in a delay
    start_worker("-c", "1").started_blocking()
    busy = app.send_task("ct.sleep", [1.5])
    eventually(lambda: busy.state is TaskState.STARTED)
    queued = app.send_task("ct.add", [1, 2])
    delayed = app.send_task("ct.add", [2, 3], countdown=2)
    kept = app.send_task("ct.add", [3, 4])

    # When both are revoked, one from Python and one from the command line
    queued.revoke()
    done = cli(env, "revoke", delayed.id)
    assert done.returncode == 0, done.stderr
    assert f"revoked 1 task id(s): {delayed.id}" in done.stdout

    # Then neither runs: their callers get REVOKED; the others run
    with pytest.raises(TaskRevokedError):
        queued.get(timeout=15)
    with pytest.raises(TaskRevokedError):
        delayed.get(timeout=15)
    assert queued.state is TaskState.REVOKED
    assert kept.get(timeout=15) == 7
    assert busy.get(timeout=15) == "slept"
    [found] = cli_json(env, "inspect")["workers"]
    assert found["stats"]["revoked"] == 2


def test_a_revoke_issued_before_a_worker_starts_reaches_it(
    start_worker, app: App, env: dict[str, str], broker_url: str
) -> None:
    # Given the topology on the broker and a task waiting, no worker yet
    from amqpq.settings import Settings

    asyncio.run(
        declare_topology(Settings(url=broker_url), load_topology(HERE / "control_topology.yaml"))
    )
    doomed = app.send_task("ct.add", [1, 1])
    fine = app.send_task("ct.add", [2, 2])
    # When it is revoked before any worker runs
    doomed.revoke()
    # And a worker starts later
    start_worker("-c", "1").started_blocking()
    # Then that worker skips it (it read the revocations stream first)
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=15)
    assert fine.get(timeout=15) == 4


def test_the_revocations_reader_reconnects_on_its_own_connection(
    start_worker, app: App, env: dict[str, str], management: httpx.Client, vhost: str
) -> None:
    # Given a worker running a task
    worker = start_worker("-c", "1").started_blocking()
    busy = app.send_task("ct.sleep", [1.5])
    eventually(lambda: busy.state is TaskState.STARTED)

    # When the revocations reader's connection drops (as a stream hiccup drops it)
    name = eventually(
        lambda: _connection_named(management, vhost, "amqpq worker-revocations "),
        what="the revocations reader's connection",
    )
    management.delete(
        f"/connections/{quote(name, safe='')}", headers={"X-Reason": "test: a stream hiccup"}
    ).raise_for_status()
    worker.wait_for_log_blocking(reconnected_marker("worker-revocations", worker.pid))

    # Then the task running meanwhile finishes on the untouched worker connection
    assert busy.get(timeout=15) == "slept"
    # And a revocation published after the reconnect still reaches the worker
    busy_again = app.send_task("ct.sleep", [1.0])
    eventually(lambda: busy_again.state is TaskState.STARTED)
    doomed = app.send_task("ct.add", [1, 1])
    doomed.revoke()
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=15)
    assert busy_again.get(timeout=15) == "slept"
    [found] = cli_json(env, "inspect")["workers"]
    assert found["stats"]["reconnects"] == 0
    assert reconnected_marker("worker", worker.pid) not in worker.log()


def test_a_revocation_published_while_the_reader_is_away_is_read_before_the_task_runs(
    start_worker, app: App, management: httpx.Client, vhost: str
) -> None:
    # Given a worker whose revocations reader lost its connection and cannot get back yet
    # (a vhost connection limit), while its own connection, which receives tasks, is fine
    worker = start_worker("-c", "1").started_blocking()
    AsyncResult("warm-up", links=app.send_context.links).revoke()  # the producer connects
    name = eventually(
        lambda: _connection_named(management, vhost, "amqpq worker-revocations "),
        what="the revocations reader's connection",
    )
    vhost_path = quote(vhost, safe="")
    connections = management.get(f"/vhosts/{vhost_path}/connections").json()
    limit = f"/vhost-limits/{vhost_path}/max-connections"
    allowed = len(connections) - 1
    try:
        for _ in range(5):
            management.put(limit, json={"value": allowed}).raise_for_status()
            losses = _reader_losses(worker.log())
            management.delete(
                f"/connections/{quote(name, safe='')}", headers={"X-Reason": "test: away"}
            ).raise_for_status()
            # (the worker has heard of it: a task could otherwise arrive first, on its own
            # connection, and run while the reader still counted as up to date)
            eventually(
                lambda n=losses: _reader_losses(worker.log()) > n,  # type: ignore[misc]
                what="the worker noticing its revocations reader's connection is gone",
            )
            time.sleep(0.5)
            again = _connection_named(management, vhost, "amqpq worker-revocations ")
            if again is None:
                break
            # The management API still counted a connection that had closed: one fewer.
            name, allowed = again, allowed - 1

        # When a task is revoked (in the stream only) and then sent
        AsyncResult("revoked-while-away", links=app.send_context.links).revoke()
        sent = app.send_task("ct.add", [1, 1], task_id="revoked-while-away")

        # Then the worker holds it while the stream cannot be read
        with pytest.raises(ResultTimeoutError):
            sent.get(timeout=2)
    finally:
        management.delete(limit)
    # And once the reader is back and has read the stream, the task is skipped as revoked
    with pytest.raises(TaskRevokedError):
        sent.get(timeout=30)
    assert reconnected_marker("worker", worker.pid) not in worker.log()


def _reader_losses(log: str) -> int:
    return sum(
        "lost the connection" in line and "worker-revocations" in line for line in log.splitlines()
    )


def _connection_named(management: httpx.Client, vhost: str, prefix: str) -> str | None:
    response = management.get(f"/vhosts/{quote(vhost, safe='')}/connections")
    response.raise_for_status()
    for connection in response.json():
        provided = connection.get("user_provided_name") or connection.get(
            "client_properties", {}
        ).get("connection_name", "")
        if provided.startswith(prefix):
            return str(connection["name"])
    return None


def test_terminate_kills_the_task_in_a_processes_pool(
    start_worker, app: App, env: dict[str, str]
) -> None:
    worker = start_worker("--processes", "1").started_blocking()
    running = app.send_task("ct.sleep", [30])
    eventually(lambda: running.state is TaskState.STARTED)

    answer = cli_json(env, "revoke", "--terminate", running.id)
    assert answer["workers"][0]["terminated"] == [running.id]

    with pytest.raises(TaskRevokedError, match="terminated"):
        running.get(timeout=15)
    worker.wait_for_log_blocking("child process replaced")
    assert app.send_task("ct.add", [5, 5]).get(timeout=15) == 10  # the new child runs tasks


def test_terminate_cancels_an_async_task(start_worker, app: App, env: dict[str, str]) -> None:
    worker = start_worker("--pool", "async", "-c", "4").started_blocking()
    running = app.send_task("ct.asleep", [30])
    eventually(lambda: running.state is TaskState.STARTED)

    answer = cli_json(env, "revoke", "--terminate", running.id)
    assert answer["workers"][0]["terminated"] == [running.id]

    with pytest.raises(TaskRevokedError, match="terminated"):
        running.get(timeout=15)
    assert app.send_task("ct.add", [5, 5]).get(timeout=15) == 10  # the worker goes on
    assert "task terminated" in worker.log()


def test_events_metrics_and_hooks_of_one_worker(
    start_worker,
    app: App,
    env: dict[str, str],
    tmp_path: Path,
    management: httpx.Client,
    vhost: str,
) -> None:
    hooks_file = tmp_path / "hooks.txt"
    port = _free_port()
    # Given a default worker (events are on without a flag)
    worker = start_worker(
        "-c",
        "2",
        "--metrics-port",
        str(port),
        extra_env={"CT_HOOKS_FILE": str(hooks_file)},
    ).started_blocking()
    # And a sender with task.sent events and publish hooks
    app.send_events = True
    published: list[str] = []

    @app.before_publish
    def stamp(envelope: Any, headers: dict[str, Any], **_: Any) -> None:
        headers["x-trace"] = "abc"

    @app.after_publish
    def note(envelope: Any, result: Any, **_: Any) -> None:
        published.append(result.id)

    # When a task runs
    result = app.send_task("ct.add", [20, 22])
    assert result.get(timeout=15) == 42
    assert published == [result.id]
    assert app.send_task("ct.header", ["x-trace"]).get(timeout=15) == "abc"

    # Then the events stream, read from a minute back, shows it sent, received, started
    # and succeeded
    watcher = subprocess.run(
        [
            sys.executable,
            "-m",
            "amqpq",
            "events",
            "--json",
            "--task",
            "ct.add",
            "--since",
            "1m",
            "--limit",
            "4",
        ],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert watcher.returncode == 0, watcher.stderr
    out = watcher.stdout
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events] == [
        "task.sent",
        "task.received",
        "task.started",
        "task.succeeded",
    ]
    assert {e["id"] for e in events} == {result.id}
    assert events[3]["runtime"] >= 0
    assert events[3]["queue"] == "work"
    assert events[1]["args"] == [20, 22]  # what the dashboard shows and sends again
    assert events[3]["result"] == "42"
    assert events[1]["worker"] == events[3]["worker"]

    # And the metrics endpoint counts it
    text = eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/metrics").text)
    assert 'amqpq_tasks_total{state="succeeded",task="ct.add"' in text
    assert "amqpq_task_runtime_seconds_bucket" in text
    assert 'amqpq_prefetch{queue="work"' in text
    assert "amqpq_tasks_in_flight" in text

    # And the hooks ran in the worker
    assert worker.terminate() == 0
    lines = [line.rsplit(" ", 1)[0] for line in hooks_file.read_text().splitlines()]
    assert lines[0] == "worker_start"
    assert "task_prerun ct.add" in lines
    assert "task_success ct.add 42" in lines
    assert "task_postrun ct.add success" in lines
    assert lines[-1] == "worker_stop"


def test_a_rate_limited_task_is_spaced_out(start_worker, app: App) -> None:
    # Given a worker with 6 slots and a task limited to 5/s
    start_worker("-c", "6").started_blocking()
    # When 6 are sent at once
    results = [app.send_task("ct.limited", [i]) for i in range(6)]
    starts = sorted(r.get(timeout=20) for r in results)
    # Then they did not all start together: 5 gaps of 200 ms, checked loosely (lower bound)
    assert starts[-1] - starts[0] >= 0.6
