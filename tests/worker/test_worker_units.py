"""Worker logic that needs no broker: app loading, queues, dead-letter targets, retries, frames."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amqpq.cli.worker import parse_size
from amqpq.envelope import ErrorInfo
from amqpq.errors import ConfigError
from amqpq.registry import Request, TaskOptions
from amqpq.topology.models import Topology
from amqpq.worker import load_app, resolve_queues
from amqpq.worker.deadletter import DeadLetterTarget, dead_letter_targets
from amqpq.worker.execution import (
    Outcome,
    RetryRequest,
    request_from_json,
    request_to_json,
    retry_countdown,
)
from amqpq.worker.hooks import Hooks
from amqpq.worker.pools.frames import read_frame, write_frame

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
