"""Tasks of the tracing test, run by a real worker: instrumented, spans written to a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from amqpq.app import App
from amqpq.tracing import instrument

app = App("tr", topology=Path(__file__).with_name("tracing_topology.yaml"))


class FileExporter(SpanExporter):
    """One JSON line per finished span, in the file the test reads."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Any) -> SpanExportResult:
        with open(self.path, "a") as out:
            for span in spans:
                assert isinstance(span, ReadableSpan)
                out.write(json.dumps(describe(span)) + "\n")
        return SpanExportResult.SUCCESS


def describe(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [event.name for event in span.events],
    }


if os.environ.get("TRACING_SPANS_FILE"):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["TRACING_SPANS_FILE"])))
    trace.set_tracer_provider(provider)
    instrument(app)

tracer = trace.get_tracer("tracing-tasks")


@app.task(name="tr.add")
def add(x: int, y: int) -> int:
    with tracer.start_as_current_span("inside the task"):
        return x + y


@app.task(name="tr.fail")
def fail() -> None:
    raise ValueError("boom")
