"""Worker logic that needs no broker: app loading, queues, dead-letter targets, retries,
frames, admission and the event fan-out."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiormq
import pytest

from amqpq.app import App
from amqpq.cli.worker import parse_size
from amqpq.codec import MessageProperties
from amqpq.envelope import ErrorInfo, TaskEnvelope, TaskState
from amqpq.errors import BrokerError, BrokerUnreachableError, ConfigError, TopologyConflictError
from amqpq.registry import Request, TaskOptions
from amqpq.settings import Settings
from amqpq.topology.models import Topology
from amqpq.transport.consume import connection_lost
from amqpq.worker import load_app, resolve_queues
from amqpq.worker.admission import ETA_TOLERANCE, REVOKED, Admission, Redelay, Refusal
from amqpq.worker.deadletter import DeadLetterTarget, dead_letter_targets
from amqpq.worker.execution import (
    Outcome,
    RetryRequest,
    request_from_json,
    request_to_json,
    retry_countdown,
)
from amqpq.worker.fanout import TaskEvent, TaskEvents
from amqpq.worker.hooks import Hooks
from amqpq.worker.pools.frames import encode_frame, read_frame, receive_frame, write_frame
from amqpq.worker.stats import WorkerStats

TOPOLOGY = Topology.model_validate(
    {
        "exchanges": [{"name": "tasks", "type": "direct"}],
        "queues": [
            {"name": "default", "type": "quorum", "bindings": [{"exchange": "tasks"}]},
            {
                "name": "own",
                "arguments": {"x-dead-letter-exchange": "mine", "x-dead-letter-routing-key": "k"},
            },
            {"name": "log", "type": "stream"},
        ],
        "routes": {"*": {"exchange": "tasks"}},
    }
)


def test_sizes_read_as_bytes_or_binary_units() -> None:
    assert parse_size("1024") == 1024
    assert parse_size("512KiB") == 512 * 1024
    assert parse_size("10MiB") == 10 * 1024 * 1024
    assert parse_size("1g") == 1024**3
    with pytest.raises(ConfigError):
        parse_size("ten megs")


def test_without_q_the_worker_consumes_the_work_queues_but_not_streams() -> None:
    assert resolve_queues(TOPOLOGY, []) == ["default", "own"]
    assert resolve_queues(TOPOLOGY, ["own", "own"]) == ["own"]
    with pytest.raises(ConfigError, match="not in the topology"):
        resolve_queues(TOPOLOGY, ["nope"])


def test_dead_letters_go_to_the_prefix_dlx_or_the_queues_own() -> None:
    targets = dead_letter_targets(TOPOLOGY, ["default", "own"])
    assert targets["default"] == DeadLetterTarget("amqpq.dlx", "default")
    assert targets["own"] == DeadLetterTarget("mine", "k")
    prefixed = Topology.model_validate(
        {**TOPOLOGY.model_dump(), "infrastructure": {"prefix": "acme"}}
    )
    assert dead_letter_targets(prefixed, ["default"])["default"].exchange == "acme.dlx"


def _options(**kwargs: Any) -> TaskOptions:
    return TaskOptions(name="t", **kwargs)


def test_retry_delay_prefers_countdown_then_eta_then_backoff_then_the_default() -> None:
    assert retry_countdown(_options(), RetryRequest(countdown=7), 0) == 7
    eta = datetime.now(UTC) + timedelta(seconds=30)
    assert 28 < retry_countdown(_options(), RetryRequest(eta=eta), 0) <= 30
    assert retry_countdown(_options(default_retry_delay=2), RetryRequest(), 5) == 2
    no_jitter = _options(retry_backoff=True, retry_jitter=False, retry_backoff_max=10)
    assert [retry_countdown(no_jitter, RetryRequest(), n) for n in range(5)] == [1, 2, 4, 8, 10]
    jitter = _options(retry_backoff=3, retry_jitter=True)
    assert all(3 <= retry_countdown(jitter, RetryRequest(), 1) <= 6 for _ in range(50))


def test_outcomes_and_requests_survive_the_json_pipe(tmp_path: Path) -> None:
    outcome = Outcome(
        status="retry",
        error=ErrorInfo(type="ValueError", message="x", traceback="tb"),
        retry=RetryRequest(countdown=1.5, eta=datetime(2030, 1, 1, tzinfo=UTC), max_retries=4),
    )
    request = Request(
        id="1", task="t", args=(1, "a"), kwargs={"k": 2}, eta=datetime(2030, 1, 1, tzinfo=UTC)
    )
    read_fd, write_fd = os.pipe()
    try:
        write_frame(write_fd, {"outcome": outcome.to_json(), "request": request_to_json(request)})
        os.close(write_fd)
        frame = read_frame(read_fd)
        assert frame is not None
        assert Outcome.from_json(frame["outcome"]) == outcome
        assert request_from_json(frame["request"]) == request
        assert read_frame(read_fd) is None  # end of input
    finally:
        os.close(read_fd)


def test_hooks_are_found_on_the_app_and_errors_in_them_are_contained() -> None:
    calls: list[str] = []

    class FakeApp:
        hooks = {"task_prerun": [lambda **kw: calls.append("pre")]}

        @staticmethod
        def on_worker_start(**kw: Any) -> None:
            calls.append("start")
            raise RuntimeError("a broken hook")

    hooks = Hooks(FakeApp())
    hooks("worker_start", worker=None)
    hooks("task_prerun", request=None, task=None)
    hooks("task_retry", request=None)
    assert calls == ["start", "pre"]
    assert hooks.task_prerun
    assert not hooks.task_postrun


def test_the_app_is_found_by_module_name_attribute_or_as_the_only_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wu_tasks_a.py").write_text("from amqpq.app import App\nmain_app = App('a')\n")
    (tmp_path / "wu_tasks_b.py").write_text(
        "from amqpq.app import App\nx = App('b')\ny = App('c')\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert load_app("wu_tasks_a", cwd=str(tmp_path)).main == "a"
    assert load_app("wu_tasks_b:y", cwd=str(tmp_path)).main == "c"
    with pytest.raises(ConfigError, match="several Apps"):
        load_app("wu_tasks_b", cwd=str(tmp_path))
    with pytest.raises(ConfigError, match="no module named"):
        load_app("wu_tasks_missing", cwd=str(tmp_path))
    with pytest.raises(ConfigError, match="no attribute"):
        load_app("wu_tasks_a:nope", cwd=str(tmp_path))


# -- admission, the event fan-out, the frame codec ---------------------------------------------


def _delivery(body: bytes, content_type: str | None = "application/json") -> Any:
    return SimpleNamespace(body=body, properties=MessageProperties(content_type=content_type))


def _admission_app() -> Any:
    app = App(
        "units", settings=Settings(url="amqp://guest:guest@127.0.0.1:1/none"), topology=TOPOLOGY
    )

    @app.task(name="units.add")
    def add(x: int, y: int) -> int:
        return x + y

    return app


class _Revoked:
    ready = True

    def __init__(self, *ids: str) -> None:
        self._ids = set(ids)

    async def wait_ready(self) -> None:
        return None

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids


def test_admission_refuses_bodies_over_the_limit_and_bodies_that_are_not_envelopes() -> None:
    admission = Admission(_admission_app().registry, max_body_size=64, delay_enabled=True)

    too_large = admission.read(_delivery(b"x" * 65))
    not_json = admission.read(_delivery(b"{nope"))
    not_an_envelope = admission.read(_delivery(b'{"id": "1"}'))
    envelope = admission.read(_delivery(b'{"id": "1", "task": "units.add", "args": [1, 2]}'))

    assert isinstance(too_large, Refusal)
    assert too_large.reason == "too_large"
    assert isinstance(not_json, Refusal)
    assert not_json.reason == "bad_json"
    assert isinstance(not_an_envelope, Refusal)
    assert not_an_envelope.reason == "bad_envelope"
    assert isinstance(envelope, TaskEnvelope)
    assert envelope.task == "units.add"


def test_admission_says_revoked_expired_not_due_unknown_or_the_task_and_arguments() -> None:
    app = _admission_app()
    admission = Admission(
        app.registry, max_body_size=1024, delay_enabled=True, revoked=_Revoked("gone")
    )
    now = datetime.now(UTC)

    def check(**fields: Any) -> Any:
        return admission.check(TaskEnvelope(id=fields.pop("id", "1"), **fields))

    expired = check(task="units.add", expires=now - timedelta(seconds=1))
    later = check(task="units.add", eta=now + timedelta(hours=1))
    unknown = check(task="units.nope")
    task = check(task="units.add", eta=now + ETA_TOLERANCE / 2)

    assert check(id="gone", task="units.add") is REVOKED
    assert isinstance(expired, Refusal)
    assert (expired.reason, expired.state) == ("expired", TaskState.EXPIRED)
    assert isinstance(later, Redelay)
    assert later.wait > timedelta(minutes=59)
    assert isinstance(unknown, Refusal)
    assert unknown.reason == "unknown_task"
    assert task is app.registry.find("units.add")
    assert admission.arguments(task, TaskEnvelope(id="1", task="units.add", args=[1, 2])) == (
        [1, 2],
        {},
    )
    bad = admission.arguments(task, TaskEnvelope(id="1", task="units.add", args=["a"]))
    assert isinstance(bad, Refusal)
    assert bad.reason == "bad_arguments"


def test_without_delay_levels_an_eta_ahead_runs_now() -> None:
    admission = Admission(_admission_app().registry, max_body_size=1024, delay_enabled=False)
    eta = datetime.now(UTC) + timedelta(hours=1)

    assert not isinstance(admission.check(TaskEnvelope(id="1", task="units.add", eta=eta)), Redelay)


def test_one_fan_out_call_per_state_change_counts_tells_observers_and_calls_hooks() -> None:
    seen: list[tuple[str, str, str, dict[str, Any]]] = []
    retried: list[dict[str, Any]] = []

    class Observer:
        def task_event(self, state: str, task: str, task_id: str, fields: Any) -> None:
            seen.append((state, task, task_id, dict(fields)))

    class Broken:
        def task_event(self, state: str, task: str, task_id: str, fields: Any) -> None:
            raise RuntimeError("observers never stop a worker")

    app = _admission_app()
    app.hooks["task_retry"] = lambda **kwargs: retried.append(kwargs)
    stats = WorkerStats()
    events = TaskEvents(stats, Hooks(app), [Broken(), Observer()])
    task = app.registry.get("units.add")

    events.delivered()
    events.received("units.add", "1", "default")
    events.started("units.add", "1", "default")
    events.ended()
    events.succeeded("units.add", "1", "default", runtime=0.25)
    events.retried(
        task,
        "2",
        "default",
        retries=1,
        countdown=3.0,
        error=None,
        request=Request(id="2", task="units.add"),
    )
    events.failed(
        "units.add",
        "3",
        "default",
        reason="failed",
        error=ErrorInfo(type="ValueError", message="no"),
        runtime=None,
    )
    events.rejected("-", None, "default", reason="bad_json", message="not JSON")
    events.revoked("units.add", "4", "default", terminated=True, runtime=1.0)

    assert [state for state, *_ in seen] == [
        TaskEvent.RECEIVED,
        TaskEvent.STARTED,
        TaskEvent.SUCCEEDED,
        TaskEvent.RETRIED,
        TaskEvent.FAILED,
        TaskEvent.REJECTED,
        TaskEvent.REVOKED,
    ]
    assert seen[2][3] == {"queue": "default", "runtime": 0.25, "result": "None"}
    assert seen[5][2] == "-"
    assert seen[6][3]["terminated"] is True
    assert (stats.received, stats.active, stats.succeeded, stats.retried) == (1, 0, 1, 1)
    assert (stats.failed, stats.revoked) == (1, 1)
    assert stats.dead_lettered == {"failed": 1, "bad_json": 1}
    assert [call["countdown"] for call in retried] == [3.0]


async def test_the_worker_reads_the_frames_a_child_writes() -> None:
    read_fd, write_fd = os.pipe()
    try:
        write_frame(write_fd, {"op": "done", "outcome": {"status": "success"}})
        reader = asyncio.StreamReader()
        reader.feed_data(os.read(read_fd, 1024))
        reader.feed_eof()
    finally:
        os.close(read_fd)
        os.close(write_fd)

    assert await receive_frame(reader) == {"op": "done", "outcome": {"status": "success"}}
    assert encode_frame({"op": "run"})[4:] == b'{"op":"run"}'
    with pytest.raises(asyncio.IncompleteReadError):
        await receive_frame(reader)


# -- start-up: what starts again and what stops the worker -------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        BrokerUnreachableError("cannot connect to RabbitMQ: amqp://guest@n2:5672/: refused"),
        aiormq.exceptions.ConnectionClosed(541, "INTERNAL_ERROR"),
        aiormq.exceptions.ChannelInvalidStateError("closed"),
        ConnectionResetError(104, "reset by peer"),
        RuntimeError("Connection was not opened"),
    ],
)
def test_a_connection_lost_during_start_up_is_started_again(error: BaseException) -> None:
    assert connection_lost(error)


@pytest.mark.parametrize(
    "error",
    [
        BrokerError("queue 'work' does not exist on the broker"),
        TopologyConflictError("queue 'work': inequivalent arg 'x-queue-type'"),
        RuntimeError("a bug"),
        ValueError("a bug"),
    ],
)
def test_a_refusal_or_a_bug_during_start_up_stops_the_worker(error: BaseException) -> None:
    assert connection_lost(error) is None
