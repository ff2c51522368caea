"""A call's shadow name in the worker's fan-out: observers (events) and log lines."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from amqpq.envelope import ErrorInfo, TaskEnvelope
from amqpq.worker.fanout import TaskEvents
from amqpq.worker.stats import WorkerStats


class _Observer:
    def __init__(self) -> None:
        self.fields: list[dict[str, Any]] = []

    def task_event(self, state: str, task: str, task_id: str, fields: Any) -> None:
        self.fields.append(dict(fields))


def test_the_shadow_name_reaches_observers_and_log_lines_only_when_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer = _Observer()
    events = TaskEvents(WorkerStats(), hooks=lambda *_, **__: None, observers=[observer])  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG, logger="amqpq.worker")

    events.succeeded("tasks.render", "1", "pdf", runtime=0.5, shadow="render:invoice-42")
    events.failed(
        "tasks.render",
        "2",
        "pdf",
        reason="failed",
        error=ErrorInfo(type="ValueError", message="no"),
        runtime=None,
        shadow="render:invoice-43",
    )
    events.succeeded("tasks.render", "3", "pdf", runtime=0.5)

    assert [f.get("shadow") for f in observer.fields] == [
        "render:invoice-42",
        "render:invoice-43",
        None,
    ]
    assert "shadow" not in observer.fields[2]
    lines = [r.getMessage() for r in caplog.records]
    assert "task succeeded task=tasks.render shadow=render:invoice-42 id=1" in lines
    assert any(
        line.startswith("task failed task=tasks.render shadow=render:invoice-43 id=2 ")
        for line in lines
    )
    assert "task succeeded task=tasks.render id=3" in lines


def test_an_envelope_without_shadow_is_what_older_workers_read() -> None:
    # The field is optional and left out of the JSON when unset: older workers, which
    # ignore unknown fields anyway, see the same envelope as before
    plain = TaskEnvelope(id="1", task="tasks.add")
    named = TaskEnvelope(id="1", task="tasks.add", shadow="add:42")
    assert "shadow" not in plain.model_dump_json(exclude_none=True)
    assert TaskEnvelope.model_validate_json(named.model_dump_json()).shadow == "add:42"
