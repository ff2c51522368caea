"""The dashboard's web application: pages, fragments, the JSON API, live updates, metrics.

Pages are rendered on the server (Jinja2); each live part of a page is also served
alone under ``/fragments/...`` and the page's script swaps it in when a server-sent
event says the history changed, so a page updates without a reload. The API answers
JSON, errors included (``{"error": "..."}`` with a 4xx status).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from amqpq.dashboard import actions
from amqpq.dashboard.history import open_history
from amqpq.dashboard.index import TASK_STATES, HistoryError, TaskQuery
from amqpq.dashboard.ingest import Hub, Ingest
from amqpq.dashboard.metrics import render_metrics
from amqpq.errors import AmqpqError
from amqpq.settings import Settings
from amqpq.topology.models import Topology

__all__ = ["DashboardConfig", "create_app"]

HERE = Path(__file__).resolve().parent
_OPEN_PATHS = ("/healthz", "/metrics")
_PAGE_SIZE = 50


@dataclass
class DashboardConfig:
    """What ``amqpq dashboard`` was started with."""

    settings: Settings
    topology: Topology
    history: str  # an SQLite file or a postgresql:// URL
    auth: tuple[str, str] | None = None
    token: str | None = None
    read_only: bool = False
    ingest: bool = True  # off in tests that feed the index themselves
    retention: float = 7 * 86400.0
    extra: dict[str, Any] = field(default_factory=dict)


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return ""
    delta = max(0.0, time.time() - seconds)
    if delta < 60:
        return f"{delta:.0f}s ago"
    if delta < 3600:
        return f"{delta / 60:.0f}m ago"
    if delta < 86400:
        return f"{delta / 3600:.1f}h ago"
    return f"{delta / 86400:.1f}d ago"


def _pretty(value: Any) -> str:
    """JSON on one line when it fits, indented when it does not."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 100 else json.dumps(value, indent=2, default=str)


class _Security(BaseHTTPMiddleware):
    """HTTP basic (pages and API) or a bearer token (API); read-only refuses changes."""

    def __init__(self, app: Any, config: DashboardConfig) -> None:
        super().__init__(app)
        self._config = config

    def _authorised(self, request: Request) -> bool:
        config = self._config
        if config.auth is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and config.token and request.url.path.startswith("/api/"):
            return hmac.compare_digest(value.strip(), config.token)
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        want_user, want_password = config.auth
        return hmac.compare_digest(user, want_user) & hmac.compare_digest(password, want_password)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if path not in _OPEN_PATHS and not self._authorised(request):
            if path.startswith("/api/"):
                response: Response = _error(401, "authentication required")
            else:
                response = PlainTextResponse("authentication required", status_code=401)
            response.headers["WWW-Authenticate"] = 'Basic realm="amqpq dashboard"'
            return response
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if self._config.read_only:
                return _error(403, "read-only dashboard: changes are refused")
            origin = request.headers.get("origin")
            if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
                # A form on another site posting with the browser's saved credentials.
                return _error(403, "cross-origin change refused")
        return await call_next(request)


def create_app(config: DashboardConfig) -> Starlette:
    """The Starlette application of one dashboard."""
    index = open_history(config.history, retention=config.retention)
    hub = Hub()
    broker = actions.BrokerView(config.settings, config.topology)
    prefix = config.topology.infrastructure.prefix
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = _when
    templates.env.filters["ago"] = _ago
    templates.env.filters["duration"] = _duration
    templates.env.filters["tojson_pretty"] = _pretty
    templates.env.globals["read_only"] = config.read_only
    templates.env.globals["states"] = TASK_STATES
    state: dict[str, Any] = {"ingest": None, "sender": None}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if config.ingest:
            ingest = None
            try:
                ingest = Ingest(config.settings, prefix, index, hub)  # reads the offset
                await ingest.start()
            except AmqpqError as exc:  # the command prints it as one line
                config.extra["startup_error"] = exc
                if ingest is not None:
                    await ingest.close()
                index.close()
                raise
            state["ingest"] = ingest
        try:
            yield
        finally:
            if state["ingest"] is not None:
                await state["ingest"].close()
            sender = state["sender"]
            if sender is not None:
                await sender.close()
            index.close()

    async def blocking(function: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(function, *args)
        except AmqpqError as exc:
            raise _ApiError(502, str(exc)) from exc

    # -- data shared by pages and API ---------------------------------------------------------

    def task_query(request: Request) -> TaskQuery:
        params = request.query_params
        try:
            limit = min(500, max(1, int(params.get("limit") or _PAGE_SIZE)))
            offset = max(0, int(params.get("offset") or 0))
        except ValueError:
            raise _ApiError(400, "limit and offset must be whole numbers") from None
        since_text = params.get("since") or None
        since: float | None = None
        if since_text:
            from amqpq.cli.events import parse_since

            try:
                since = parse_since(since_text).timestamp()
            except AmqpqError as exc:
                raise _ApiError(400, str(exc).replace("--since", "since")) from None
        task_state = (params.get("state") or "").upper() or None
        if task_state and task_state not in TASK_STATES:
            raise _ApiError(400, f"state {task_state!r}: expected one of {', '.join(TASK_STATES)}")
        return TaskQuery(
            state=task_state,
            name=params.get("name") or None,
            worker=params.get("worker") or None,
            since=since,
            text=params.get("q") or None,
            limit=limit,
            offset=offset,
        )

    async def queues_document() -> dict[str, Any]:
        document = await blocking(broker.status)
        return {
            "queues": document["queues"],
            "delayed": document["delayed"],
            "vhost": document["vhost"],
        }

    async def workers_list() -> list[dict[str, Any]]:
        workers: list[dict[str, Any]] = await asyncio.to_thread(index.workers)
        for worker in workers:
            worker["active_tasks"] = await asyncio.to_thread(index.active, worker["name"])
        return workers

    async def the_task(task_id: str) -> dict[str, Any]:
        task = await asyncio.to_thread(index.task, task_id)
        if task is None:
            raise _ApiError(404, f"task {task_id} is not in the history")
        return task

    # -- API ----------------------------------------------------------------------------------

    async def api_workers(request: Request) -> Response:
        return JSONResponse({"workers": await workers_list()})

    async def api_tasks(request: Request) -> Response:
        query = task_query(request)
        tasks, total = await asyncio.to_thread(index.tasks, query)
        return JSONResponse(
            {"tasks": tasks, "total": total, "limit": query.limit, "offset": query.offset}
        )

    async def api_task(request: Request) -> Response:
        return JSONResponse(await the_task(request.path_params["task_id"]))

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise _ApiError(400, "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "the body must be a JSON object")
        return body

    async def api_revoke(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        body = await body_of(request)
        terminate = body.get("terminate", request.query_params.get("terminate") in ("1", "true"))
        if not isinstance(terminate, bool):
            raise _ApiError(400, "terminate must be true or false")
        try:
            outcome = await actions.revoke(
                config.settings, prefix, task_id, terminate, by="dashboard"
            )
        except AmqpqError as exc:
            raise _ApiError(502, str(exc)) from exc
        return JSONResponse(outcome)

    async def sender() -> Any:
        if state["sender"] is None:
            from amqpq.app import App

            app = App(settings=config.settings, topology=config.topology)
            state["sender"] = app.aproducer()
        return state["sender"]

    async def api_retry(request: Request) -> Response:
        task = await the_task(request.path_params["task_id"])
        if task.get("args") is None or isinstance(task.get("args"), str):
            raise _ApiError(
                409,
                "this task's arguments were too large to keep in its events; "
                "replay it from the dead letters instead",
            )
        options: dict[str, Any] = {}
        for key in ("parent_id", "root_id", "queue"):
            if task.get(key):
                options[key] = task[key]
        producer = await sender()
        sent = time.time()
        try:
            result = await producer.send_task(
                task["name"], task.get("args") or [], task.get("kwargs") or {}, **options
            )
        except AmqpqError as exc:
            raise _ApiError(502, str(exc)) from exc
        await asyncio.to_thread(
            index.link_retry,
            task["id"],
            result.id,
            task["name"],
            task.get("args"),
            task.get("kwargs"),
            sent,
        )
        hub.publish({"events": 1, "tasks": [task["id"], result.id], "workers": False})
        return JSONResponse({"id": result.id, "retry_of": task["id"]}, status_code=201)

    async def api_queues(request: Request) -> Response:
        return JSONResponse(await queues_document())

    def queue_name(request: Request) -> str:
        name = request.path_params["queue"]
        if config.topology.queue(name) is None:
            raise _ApiError(404, f"queue {name!r} is not in the topology")
        return str(name)

    async def api_dead_letters(request: Request) -> Response:
        try:
            limit = min(500, max(1, int(request.query_params.get("limit") or 50)))
        except ValueError:
            raise _ApiError(400, "limit must be a whole number") from None
        name = queue_name(request)
        return JSONResponse(
            await blocking(actions.dead_letters, config.settings, config.topology, name, limit)
        )

    async def api_replay(request: Request) -> Response:
        name = queue_name(request)
        body = await body_of(request)
        task_id = body.get("id") or request.query_params.get("id")
        return JSONResponse(
            await blocking(
                actions.replay_dead_letters, config.settings, config.topology, name, task_id
            )
        )

    async def api_purge(request: Request) -> Response:
        name = queue_name(request)
        return JSONResponse(
            await blocking(actions.purge_dead_letters, config.settings, config.topology, name)
        )

    async def api_schedules(request: Request) -> Response:
        return JSONResponse({"schedules": await blocking(broker.schedules, index.last_run)})

    async def api_throughput(request: Request) -> Response:
        return JSONResponse({"minutes": await asyncio.to_thread(index.throughput, 60)})

    async def api_events(request: Request) -> Response:
        """Server-sent events: one ``change`` event per indexed batch."""
        queue = hub.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        notice = await asyncio.wait_for(queue.get(), 15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: change\ndata: {json.dumps(notice)}\n\n"
            finally:
                hub.unsubscribe(queue)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def healthz(request: Request) -> Response:
        ingest: Ingest | None = state["ingest"]
        error = ingest.error if ingest is not None else None
        return JSONResponse(
            {
                "ok": error is None,
                "indexed_events": ingest.indexed_events if ingest else 0,
                "error": error,
            },
            status_code=200 if error is None else 503,
        )

    async def metrics(request: Request) -> Response:
        document: dict[str, Any] | None
        try:
            document = await asyncio.to_thread(broker.status)
        except AmqpqError:
            document = None
        text = await asyncio.to_thread(render_metrics, index, document)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # -- pages and fragments ------------------------------------------------------------------

    def page(request: Request, name: str, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, context)

    async def overview(request: Request) -> Response:
        return page(request, "overview.html", **await overview_context())

    async def overview_context() -> dict[str, Any]:
        workers = await workers_list()
        try:
            queues: dict[str, Any] | None = await queues_document()
            queues_error = None
        except _ApiError as exc:
            queues, queues_error = None, exc.message
        return {"workers": workers, "queues": queues, "queues_error": queues_error}

    async def fragment_overview(request: Request) -> Response:
        return page(request, "fragments/overview.html", **await overview_context())

    async def tasks_context(request: Request) -> dict[str, Any]:
        query = task_query(request)
        tasks, total = await asyncio.to_thread(index.tasks, query)
        params = dict(request.query_params)
        return {"tasks": tasks, "total": total, "query": query, "params": params}

    async def tasks_page(request: Request) -> Response:
        return page(request, "tasks.html", **await tasks_context(request))

    async def fragment_tasks(request: Request) -> Response:
        return page(request, "fragments/tasks.html", **await tasks_context(request))

    async def task_page(request: Request) -> Response:
        return page(request, "task.html", task=await the_task(request.path_params["task_id"]))

    async def fragment_task(request: Request) -> Response:
        return page(
            request, "fragments/task.html", task=await the_task(request.path_params["task_id"])
        )

    async def workers_page(request: Request) -> Response:
        return page(request, "workers.html", workers=await workers_list())

    async def fragment_workers(request: Request) -> Response:
        return page(request, "fragments/workers.html", workers=await workers_list())

    async def queues_page(request: Request) -> Response:
        context = await overview_context()
        selected = request.query_params.get("dlq")
        letters = None
        if selected:
            if config.topology.queue(selected) is None:
                raise _ApiError(404, f"queue {selected!r} is not in the topology")
            letters = await blocking(
                actions.dead_letters, config.settings, config.topology, selected, 50
            )
        return page(request, "queues.html", **context, selected=selected, letters=letters)

    async def schedules_page(request: Request) -> Response:
        schedules = await blocking(broker.schedules, index.last_run)
        return page(request, "schedules.html", schedules=schedules)

    # -- errors -------------------------------------------------------------------------------

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith(("/api/", "/fragments/"))

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _ApiError)
        if wants_json(request):
            return _error(exc.status, exc.message)
        return page_error(request, exc.status, exc.message)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = str(exc.detail)
        if wants_json(request):
            return _error(exc.status_code, message)
        return page_error(request, exc.status_code, message)

    async def on_history_error(request: Request, exc: Exception) -> Response:
        # The history's database is away (a PostgreSQL server restarting): 503, said.
        if wants_json(request):
            return _error(503, str(exc))
        return page_error(request, 503, str(exc))

    def page_error(request: Request, status: int, message: str) -> Response:
        return templates.TemplateResponse(
            request, "error.html", {"status": status, "message": message}, status_code=status
        )

    def get(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Route:
        return Route(path, endpoint, methods=["GET"])

    def post(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Route:
        return Route(path, endpoint, methods=["POST"])

    routes = [
        get("/", overview),
        get("/tasks", tasks_page),
        get("/tasks/{task_id}", task_page),
        get("/workers", workers_page),
        get("/queues", queues_page),
        get("/schedules", schedules_page),
        get("/fragments/overview", fragment_overview),
        get("/fragments/tasks", fragment_tasks),
        get("/fragments/tasks/{task_id}", fragment_task),
        get("/fragments/workers", fragment_workers),
        get("/api/workers", api_workers),
        get("/api/tasks", api_tasks),
        get("/api/tasks/{task_id}", api_task),
        post("/api/tasks/{task_id}/revoke", api_revoke),
        post("/api/tasks/{task_id}/retry", api_retry),
        get("/api/queues", api_queues),
        get("/api/queues/{queue}/dead-letters", api_dead_letters),
        post("/api/queues/{queue}/dead-letters/replay", api_replay),
        post("/api/queues/{queue}/dead-letters/purge", api_purge),
        get("/api/schedules", api_schedules),
        get("/api/throughput", api_throughput),
        get("/api/events", api_events),
        get("/healthz", healthz),
        get("/metrics", metrics),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Security, config=config)],
        exception_handlers={
            _ApiError: on_api_error,
            HTTPException: on_http_error,
            HistoryError: on_history_error,
        },
        lifespan=lifespan,
    )
    app.state.index = index
    app.state.hub = hub
    return app
