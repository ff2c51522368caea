"""``amqpq send TASK [ARGS...]``: send a task by name, optionally wait for its result."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from amqpq.cli.common import (
    TopologyOption,
    UrlOption,
    err_console,
    fail,
    handle_errors,
    settings_from,
)
from amqpq.errors import ConfigError, ExitCode, RemoteTaskError, ResultTimeoutError

if TYPE_CHECKING:
    from amqpq.app import App
    from amqpq.registry import Task
    from amqpq.settings import Settings
    from amqpq.topology.models import Topology

__all__ = ["coerce_arguments", "parse_value", "send"]


def parse_value(text: str) -> Any:
    """JSON when the text is valid JSON (``3``, ``[1, 2]``, ``"x"``, ``null``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r}: expected key=value")
        pairs[key] = value
    return pairs


def coerce_arguments(
    task: Task[Any, Any] | None, args: Sequence[str], kwargs: Mapping[str, str]
) -> tuple[list[Any], dict[str, Any]]:
    """Command-line tokens as the task's arguments.

    A token is JSON when it parses as JSON, else text. When the task is known, a
    token whose JSON value its parameter refuses but whose text it accepts is sent
    as text: ``2024`` for a ``str`` parameter is ``"2024"``, not the number.
    """
    if task is None:
        return [parse_value(a) for a in args], {k: parse_value(v) for k, v in kwargs.items()}
    signature = task.parameters
    positional = [
        name
        for name, kind in signature.kinds.items()
        if kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)
    ]
    var_positional = next(
        (name for name, kind in signature.kinds.items() if kind is kind.VAR_POSITIONAL), None
    )
    var_keyword = next(
        (name for name, kind in signature.kinds.items() if kind is kind.VAR_KEYWORD), None
    )

    def coerce(param: str | None, token: str) -> Any:
        value = parse_value(token)
        adapter = signature.adapters.get(param) if param is not None else None
        if adapter is None or isinstance(value, str):
            return value
        try:
            adapter.validate_python(value)
        except ValueError:
            try:
                adapter.validate_python(token)
            except ValueError:
                return value  # neither fits: the worker's validation says why
            return token
        return value

    out_args = [
        coerce(positional[i] if i < len(positional) else var_positional, token)
        for i, token in enumerate(args)
    ]
    out_kwargs = {
        key: coerce(key if key in signature.kinds else var_keyword, token)
        for key, token in kwargs.items()
    }
    return out_args, out_kwargs


def _registered(app_spec: str | None, name: str) -> tuple[App | None, Task[Any, Any] | None]:
    """``-A``'s App and its task; refuses a name it does not register, before sending."""
    if app_spec is None:
        return None, None
    from amqpq.worker.loader import load_app

    loaded = load_app(app_spec, cwd=os.getcwd())
    registry = loaded.registry
    task = registry.find(name)
    if task is None:
        known = ", ".join(registry.names()) or "no task"
        raise ConfigError(
            f"unknown task {name!r}: the App of -A {app_spec} registers {known}; nothing was sent"
        )
    return loaded, task


def _note_unchecked(topology: Topology, name: str) -> None:
    pattern = topology.route_pattern_for(name)
    if pattern is not None and pattern != name:
        err_console.print(
            f"note: task name {name!r} not checked: it is routed by {pattern!r}, and no worker "
            "reads it here (-A MODULE checks the name and the argument types before sending)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _idle_queues(
    app: App,
    settings: Settings,
    task: str,
    exchange: str | None,
    routing_key: str | None,
    headers: Mapping[str, Any],
) -> list[str]:
    """The queues this send reached that no worker consumes right now."""
    from amqpq.topology.infra import effective_topology
    from amqpq.topology.routing import route_targets
    from amqpq.transport.queues import QueueNotFoundError, QueueSession

    route = app.topology.route_for(task)
    if exchange is None or exchange == route.exchange:
        exchange, key = route.exchange, route.routing_key if routing_key is None else routing_key
        headers = {**route.headers, **headers}
    else:
        key = routing_key or ""
    targets = sorted(route_targets(effective_topology(app.topology), exchange, key, headers))
    idle = []
    with QueueSession(settings, "cli") as session:
        for queue in targets:
            try:
                if session.count(queue).consumers == 0:
                    idle.append(queue)
            except QueueNotFoundError:
                idle.append(queue)
    return idle


def _no_consumer_hint(queues: Sequence[str]) -> str:
    names = ", ".join(repr(q) for q in queues)
    return (
        f"no worker consumes queue {names}: the task waits there until one does "
        f"(amqpq worker -A MODULE -Q {','.join(queues)})"
    )


@handle_errors
def send(
    task: Annotated[str, typer.Argument(help="Task name, e.g. tasks.add", show_default=False)],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Positional arguments: JSON when valid JSON, else a string"),
    ] = None,
    kwarg: Annotated[
        list[str] | None,
        typer.Option("-k", "--kwarg", help="Keyword argument key=value (value as JSON or string)"),
    ] = None,
    routing_key: Annotated[
        str | None, typer.Option("--routing-key", help="Override the route's routing key")
    ] = None,
    exchange: Annotated[
        str | None, typer.Option("--exchange", help="Override the route's exchange")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", help="Message header k=v (string value)")
    ] = None,
    countdown: Annotated[
        float | None, typer.Option("--countdown", help="Run no earlier than S seconds from now")
    ] = None,
    eta: Annotated[
        str | None,
        typer.Option("--eta", help="Run no earlier than this ISO 8601 time (no offset: UTC)"),
    ] = None,
    expires: Annotated[
        float | None, typer.Option("--expires", help="Do not run after S seconds from now")
    ] = None,
    priority: Annotated[int | None, typer.Option("--priority", help="Priority 0-255")] = None,
    task_id: Annotated[str | None, typer.Option("--task-id", help="Choose the task id")] = None,
    result_queue: Annotated[
        str | None,
        typer.Option("--result-queue", help="Durable queue for the result instead of reply-to"),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the result and print it as JSON")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait with --wait (exit 4 after)")
    ] = 30.0,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "-A",
            "--app",
            help="Module with the App: check the task name and argument types before sending",
        ),
    ] = None,
    topology: TopologyOption = None,
    url: UrlOption = None,
) -> None:
    """Send a task by name (the task's code is not needed here; the worker validates).

    Without --wait, prints the task id. With --wait, prints the result as JSON and
    exits non-zero if the task failed (1), timed out (4) or could not be routed (6).
    """
    from amqpq.app import App

    loaded, known = _registered(app_spec, task)
    positional, kwargs = coerce_arguments(known, args or [], _pairs(kwarg or [], "-k"))
    headers = _pairs(header or [], "--header")
    options: dict[str, Any] = {
        "routing_key": routing_key,
        "exchange": exchange,
        "headers": headers or None,
        "countdown": countdown,
        "eta": eta,
        "expires": expires,
        "priority": priority,
        "task_id": task_id,
        "result_queue": result_queue,
        "ignore_result": not wait and result_queue is None,
    }
    if timeout <= 0:
        raise ConfigError("--timeout must be positive")
    if loaded is not None and topology is None:
        # Routed as the App's own code routes it (its amqpq.yaml is found beside its
        # module), whatever folder the command runs in.
        settings = loaded.settings if url is None else settings_from(url)
        app = App(settings=settings, topology=loaded.topology)
    else:
        settings = settings_from(url, topology)
        app = App(settings=settings)
    try:
        if known is None:
            _note_unchecked(app.topology, task)
        result = app.send_task(
            task, positional, kwargs, **{k: v for k, v in options.items() if v is not None}
        )
        if not wait:
            typer.echo(result.id)
            return
        idle: list[str] = []
        if result_queue is None:
            idle = _idle_queues(app, settings, task, exchange, routing_key, headers)
            if idle:
                err_console.print(
                    f"warning: {_no_consumer_hint(idle)}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
        try:
            value = result.get(timeout=timeout)
        except RemoteTaskError as exc:
            raise fail(
                f"task {task} ({result.id}) {result.state.value.lower()}: {exc}", ExitCode.FAILURE
            ) from None
        except ResultTimeoutError as exc:
            if idle:
                raise ResultTimeoutError(f"{exc}; {_no_consumer_hint(idle)}") from None
            raise
        typer.echo(json.dumps(value, ensure_ascii=False, default=str))
    finally:
        app.close()
