"""``amqpq send TASK [ARGS...]``: send a task by name, optionally wait for its result."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from amqpq.cli.common import TopologyOption, UrlOption, fail, handle_errors, settings_from
from amqpq.errors import ConfigError, ExitCode, RemoteTaskError

__all__ = ["parse_value", "send"]


def parse_value(text: str) -> Any:
    """JSON when the text is valid JSON (``3``, ``[1, 2]``, ``"x"``, ``null``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: list[str], what: str, *, as_json: bool) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r}: expected key=value")
        pairs[key] = parse_value(value) if as_json else value
    return pairs


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
    topology: TopologyOption = None,
    url: UrlOption = None,
) -> None:
    """Send a task by name (the task's code is not needed here; the worker validates).

    Without --wait, prints the task id. With --wait, prints the result as JSON and
    exits non-zero if the task failed (1), timed out (4) or could not be routed (6).
    """
    from amqpq.app import App

    positional = [parse_value(arg) for arg in args or []]
    kwargs = _pairs(kwarg or [], "-k", as_json=True)
    headers = _pairs(header or [], "--header", as_json=False)
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
    app = App(settings=settings_from(url, topology))
    try:
        result = app.send_task(
            task, positional, kwargs, **{k: v for k, v in options.items() if v is not None}
        )
        if not wait:
            typer.echo(result.id)
            return
        try:
            value = result.get(timeout=timeout)
        except RemoteTaskError as exc:
            raise fail(
                f"task {task} ({result.id}) {result.state.value.lower()}: {exc}", ExitCode.FAILURE
            ) from None
        typer.echo(json.dumps(value, ensure_ascii=False, default=str))
    finally:
        app.close()
