"""OpenTelemetry tracing across a real broker: a sender's span continues into the worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from amqpq.app import App
from amqpq.errors import RemoteTaskError
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.tracing import instrument
from amqpq.transport.declare import declare_topology_sync
from tests.support.processes import Processes, amqpq_env
from tests.support.waiting import eventually

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "tracing_topology.yaml"


def test_a_senders_trace_continues_into_the_task_and_records_failures(
    broker_url: str, amqpq_processes: Processes, tmp_path: Path
) -> None:
    from tests.tracing.tracing_tasks import FileExporter

    declare_topology_sync(Settings(url=broker_url), load_topology(TOPOLOGY))
    spans_file = tmp_path / "spans.jsonl"
    env = amqpq_env(broker_url, AMQPQ_TOPOLOGY=str(TOPOLOGY), TRACING_SPANS_FILE=str(spans_file))
    amqpq_processes.start(
        "worker", "-A", "tracing_tasks", "--workers", "1", env=env, cwd=HERE
    ).started_blocking()

    # Given an instrumented sender with its own tracer provider
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(str(spans_file))))
    tracer = provider.get_tracer("web")
    sender = App("tr-sender", url=broker_url, topology=TOPOLOGY)
    instrument(sender, tracer_provider=provider)
    instrument(sender, tracer_provider=provider)  # twice: still one span per send
    try:
        # When a web request sends a task, and another that fails
        with tracer.start_as_current_span("GET /signup") as request_span:
            assert sender.send_task("tr.add", [2, 3]).get(timeout=15) == 5
            with pytest.raises(RemoteTaskError):
                sender.send_task("tr.fail").get(timeout=15)
        request_trace = format(request_span.get_span_context().trace_id, "032x")
    finally:
        sender.close()

    def spans() -> list[dict[str, Any]] | None:
        found = [json.loads(line) for line in spans_file.read_text().splitlines()]
        return found if len([s for s in found if s["name"].startswith("run ")]) == 2 else None

    found = eventually(spans, what="the worker's run spans")
    by_name = {s["name"]: s for s in found}
    # Then the whole chain is one trace: request -> send -> run -> the task's own span
    assert {s["trace_id"] for s in found} == {request_trace}
    send, run = by_name["send tr.add"], by_name["run tr.add"]
    assert send["kind"] == "PRODUCER"
    assert run["kind"] == "CONSUMER"
    assert run["parent_id"] == send["span_id"]
    assert by_name["inside the task"]["parent_id"] == run["span_id"]
    assert run["attributes"]["messaging.destination.name"] == "traced"
    assert send["attributes"]["messaging.destination.name"] == "tr"
    assert run["attributes"]["amqpq.outcome"] == "success"
    assert [s["name"] for s in found].count("send tr.add") == 1
    # And the failure is on the run span
    failed = by_name["run tr.fail"]
    assert failed["status"] == "ERROR"
    assert failed["events"] == ["exception"]
