"""FastAPI: answer at once, build the report on a worker, let the client poll for it.

Start a worker (from this directory), then the app::

    amqpq worker -A web_tasks -Q default,high_priority -c 4
    uvicorn fastapi_app:api --port 8000          # pip install uvicorn

    curl -si -X POST localhost:8000/reports -H 'content-type: application/json' \\
         -d '{"customer_id": 42, "period": "2026-03"}'
    # HTTP/1.1 202 Accepted   {"task_id": "…", "status_url": "/reports/…"}
    curl -s localhost:8000/reports/<task_id>
    # {"task_id": "…", "state": "PROGRESS", "progress": {"section": 2, "sections": 3}}
    # {"task_id": "…", "state": "SUCCESS", "result": {...}}

Handlers use the App's asyncio producer (aio-pika, one connection per event
loop), so sending never blocks the loop; the lifespan closes it on shutdown.

Where results go: the default, RabbitMQ direct reply-to, delivers a result only
to the connection that sent the task, which is no use when the client asks a
later request (maybe served by another process) for it. So the task is sent
with ``result_queue=RESULT_QUEUE``: the worker publishes every reply (progress
and final) to that durable queue, and ``result_from_queue(task_id, ...)``
collects it by id from any process. A reply is a message, not a key in a store:
the process that collects it takes it off the queue. This app therefore keeps
the handles it has seen in a bounded in-memory map; with several app processes,
save final results where all of them can read them (your database) or send
``GET`` for one task to one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_tasks import app, generate_report

from amqpq import AsyncResult, RemoteTaskError, ResultTimeoutError, TaskState

RESULT_QUEUE = "web.report-results"
"""A durable (classic) queue for the replies; declared by the producer on first use."""

MAX_TRACKED = 10_000
"""Result handles kept per process (oldest dropped first)."""


class ReportRequest(BaseModel):
    customer_id: int = Field(gt=0)
    period: str = Field(pattern=r"^\d{4}-\d{2}$", examples=["2026-03"])
    sections: int = Field(default=3, ge=1, le=20)


class ReportAccepted(BaseModel):
    task_id: str
    status_url: str


class ReportStatus(BaseModel):
    task_id: str
    state: str
    progress: dict[str, Any] | None = None
    result: Any = None
    error: dict[str, str] | None = None


class Results:
    """The result handles of this process, by task id."""

    def __init__(self, limit: int = MAX_TRACKED) -> None:
        self.limit = limit
        self._handles: OrderedDict[str, AsyncResult] = OrderedDict()
        # One scan of the result queue at a time: concurrent scans on the producer's
        # side channel would requeue each other's messages.
        self._scan = asyncio.Lock()

    def track(self, result: AsyncResult) -> None:
        self._handles[result.id] = result
        self._handles.move_to_end(result.id)
        while len(self._handles) > self.limit:
            self._handles.popitem(last=False)

    async def peek(self, task_id: str) -> AsyncResult:
        """The handle for ``task_id`` with whatever replies have arrived; never waits."""
        result = self._handles.get(task_id)
        if result is None:
            # Sent by another process, or before a restart: collect it by id.
            result = app.aproducer().result_from_queue(task_id, RESULT_QUEUE)
            self.track(result)
        if not result.ready():
            async with self._scan:
                with contextlib.suppress(ResultTimeoutError):  # not final yet
                    await result.aget(timeout=0, propagate=False)
        return result


@contextlib.asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    api.state.results = Results()
    await app.aproducer().connect()  # fail at start-up, not on the first request
    try:
        yield
    finally:
        await app.aclose()  # this loop's producer connection


api = FastAPI(title="amqpq reports", lifespan=lifespan)


@api.post("/reports", status_code=202)
async def create_report(body: ReportRequest, request: Request) -> ReportAccepted:
    """Enqueue the report and answer at once (202); the worker does the slow part."""
    # adelay() takes only the task's arguments; aapply_async() adds send options.
    result = await generate_report.aapply_async(kwargs=body.model_dump(), result_queue=RESULT_QUEUE)
    request.app.state.results.track(result)
    return ReportAccepted(task_id=result.id, status_url=f"/reports/{result.id}")


@api.get("/reports/{task_id}", response_model_exclude_none=True)
async def report_status(task_id: str, request: Request) -> ReportStatus:
    """The task's state now: PENDING, STARTED/PROGRESS/RETRY, SUCCESS or a failure."""
    result: AsyncResult = await request.app.state.results.peek(task_id)
    state = result.state
    if state is TaskState.SUCCESS:
        return ReportStatus(task_id=task_id, state=state.value, result=result.result)
    if result.ready():
        error = result.result
        assert isinstance(error, RemoteTaskError)
        failure = {"type": error.type_name, "message": error.message}
        return ReportStatus(task_id=task_id, state=state.value, error=failure)
    progress = result.info if isinstance(result.info, dict) else None
    return ReportStatus(task_id=task_id, state=state.value, progress=progress)
