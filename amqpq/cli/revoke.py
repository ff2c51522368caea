"""``amqpq revoke ID [ID...] [--terminate]``: do not run these tasks (kept on the broker)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from amqpq.cli.common import TopologyOption, UrlOption, console, handle_errors, settings_from
from amqpq.cli.inspect import TimeoutOption
from amqpq.cli.purge import load_for
from amqpq.control import ControlReply, broadcast
from amqpq.revocations import revocation_message
from amqpq.settings import Settings, connection_name
from amqpq.transport.aio import AsyncBroker

__all__ = ["revoke"]


async def _revoke(
    settings: Settings, prefix: str, ids: list[str], terminate: bool, timeout: float
) -> list[ControlReply]:
    broker = AsyncBroker(settings, "revoke")
    try:
        await broker.connect()
        by = connection_name("revoke").removeprefix("amqpq revoke ")
        await broker.publish(revocation_message(ids, terminate=terminate, prefix=prefix, by=by))
    finally:
        await broker.close()
    # The record above reaches every worker, now and later; this asks the live ones
    # what they did (and applies it at once).
    return await broadcast(
        settings, "revoke", {"ids": ids, "terminate": terminate}, prefix=prefix, timeout=timeout
    )


@handle_errors
def revoke(
    ids: Annotated[list[str], typer.Argument(help="Task ids", show_default=False)],
    terminate: Annotated[
        bool,
        typer.Option(
            "--terminate",
            help="Also stop it where it runs now (processes pool: the child is killed; "
            "threads and async pools cannot)",
        ),
    ] = False,
    topology: TopologyOption = None,
    url: UrlOption = None,
    timeout: TimeoutOption = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
) -> None:
    """Revoke tasks: workers skip them when they consume them (answering REVOKED).

    The revocation is stored on the broker (stream amqpq.revoked, 24 h), so it also
    reaches workers that start later and tasks still waiting in a delay.
    """
    settings = settings_from(url, topology)
    prefix = load_for(settings, topology).infrastructure.prefix
    replies = asyncio.run(_revoke(settings, prefix, ids, terminate, timeout))
    workers: list[dict[str, Any]] = [{"worker": r.worker, **r.data} for r in replies if r.ok]
    if json_output:
        console.print_json(json.dumps({"revoked": ids, "terminate": terminate, "workers": workers}))
        return
    console.print(
        f"revoked {len(ids)} task id(s): {', '.join(ids)} (kept 24 h on the broker)",
        highlight=False,
    )
    for worker in workers:
        parts = []
        if worker.get("terminated"):
            parts.append("terminated " + ", ".join(worker["terminated"]))
        for task_id, why in (worker.get("not_terminated") or {}).items():
            parts.append(f"{task_id} not terminated: {why}")
        running = [i for i in worker.get("running", []) if i not in worker.get("terminated", [])]
        if running and not terminate:
            parts.append("running now (finishes; use --terminate to stop): " + ", ".join(running))
        console.print(
            f"  {worker['worker']}: {'; '.join(parts) or 'not running there'}", highlight=False
        )
    if not workers:
        console.print(f"  no live worker answered within {timeout:g}s", highlight=False)
