"""``amqpq result ID [--wait] [--timeout S] [--json]``: a task's stored state, by id."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from amqpq.cli.common import console, fail, handle_errors, settings_from
from amqpq.envelope import TaskState
from amqpq.errors import ConfigError, ExitCode
from amqpq.results import open_store
from amqpq.results.base import StoredResult, as_json

__all__ = ["result"]


def _describe(task_id: str, stored: StoredResult | None) -> dict[str, Any]:
    return as_json(stored) if stored is not None else {"id": task_id, "state": "PENDING"}


@handle_errors
def result(
    task_id: Annotated[str, typer.Argument(help="The task id", show_default=False)],
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the task is final (exit 1 if it failed)")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait with --wait (exit 4 after)")
    ] = 60.0,
    backend: Annotated[
        str | None,
        typer.Option("--backend", help="Result store URL [env: AMQPQ_RESULT_BACKEND]"),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
) -> None:
    """Show a task's state and result from the result store (PENDING when unknown)."""
    if timeout < 0:
        raise ConfigError("--timeout must be >= 0")
    url = backend or settings_from(None).result_backend
    if not url:
        raise ConfigError(
            "no result store: give --backend URL or set AMQPQ_RESULT_BACKEND "
            "(redis://... or postgresql://...)"
        )
    store = open_store(url)
    try:
        stored = store.wait(task_id, timeout) if wait else store.load(task_id)
    finally:
        store.close()
    state = stored.state if stored is not None else TaskState.PENDING
    document = _describe(task_id, stored)
    if json_output:
        console.print_json(json.dumps(document))
    else:
        console.print(f"{task_id} {state.value}", highlight=False)
        for field in ("task", "result", "meta", "error", "worker", "date_done"):
            if field in document:
                console.print(f"  {field}: {json.dumps(document[field])}", highlight=False)
    if wait and not state.is_final:
        raise fail(
            f"task {task_id} not final within {timeout:g}s (state {state.value})", ExitCode.TIMEOUT
        )
    if wait and state is not TaskState.SUCCESS:
        raise typer.Exit(int(ExitCode.FAILURE))
