"""OpenTelemetry spans for sending and running tasks, the trace carried in the message.

::

    from amqpq.tracing import instrument

    instrument(app)   # where tasks are sent (a web app) and where they run (the worker's app)

A send makes a ``send <task>`` span (kind PRODUCER) and writes the W3C trace context
(``traceparent``, ``tracestate``) into the message's headers; the worker reads it
back and runs the task inside a ``run <task>`` span (kind CONSUMER) whose parent is
the sender's, so a web request's trace continues into the task, and spans the task
makes nest under it. A failure is recorded on the span (exception and error status).

Built on the App's hooks (``before_publish``, ``task_prerun``, ``task_failure``,
``task_postrun``): nothing changes for an App that is not instrumented. Needs
``opentelemetry-api`` (``pip install 'amqpq[otel]'``); spans go wherever the
process's OpenTelemetry SDK sends them (none without an SDK).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from amqpq.app import App

__all__ = ["instrument"]

_INSTRUMENTED = "_amqpq_tracing"


def instrument(app: App, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Add send and run spans to ``app`` (once; a second call changes nothing)."""
    if getattr(app, _INSTRUMENTED, False):
        return
    setattr(app, _INSTRUMENTED, True)
    tracer = trace.get_tracer("amqpq", tracer_provider=tracer_provider)
    running: dict[str, tuple[trace.Span, object]] = {}
    lock = threading.Lock()

    def before_publish(
        envelope: Any, exchange: str, routing_key: str, headers: dict[str, Any], **_: Any
    ) -> None:
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.destination.name": exchange or routing_key,
            "messaging.rabbitmq.destination.routing_key": routing_key,
            "messaging.message.id": envelope.id,
            "amqpq.task": envelope.task,
        }
        with tracer.start_as_current_span(
            f"send {envelope.task}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            propagate.inject(headers)

    def prerun(request: Any, task: Any, **_: Any) -> None:
        if request is None:
            return
        parent = propagate.extract(
            {k: v for k, v in (request.headers or {}).items() if isinstance(v, str)}
        )
        span = tracer.start_span(
            f"run {task.name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": request.queue or "",
                "messaging.message.id": request.id,
                "amqpq.task": task.name,
                "amqpq.retries": request.retries,
                "amqpq.worker": request.hostname or "",
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        with lock:
            running[request.id] = (span, token)

    def failure(request: Any, task: Any, exception: BaseException, **_: Any) -> None:
        with lock:
            entry = running.get(request.id) if request is not None else None
        if entry is not None:
            span = entry[0]
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}"))

    def postrun(request: Any, task: Any, state: Any, **_: Any) -> None:
        with lock:
            entry = running.pop(request.id, None) if request is not None else None
        if entry is None:
            return
        span, token = entry
        span.set_attribute("amqpq.outcome", str(getattr(state, "value", state)))
        context.detach(token)  # type: ignore[arg-type]
        span.end()

    app.on_before_publish(before_publish)
    app.on_task_prerun(prerun)
    app.on_task_failure(failure)
    app.on_task_postrun(postrun)
