"""``amqpq inspect``: registered tasks, active tasks and stats of every live worker."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from amqpq.cli.common import (
    TopologyOption,
    UrlOption,
    console,
    err_console,
    handle_errors,
    settings_from,
)
from amqpq.cli.purge import load_for
from amqpq.control import broadcast
from amqpq.errors import ExitCode

__all__ = ["inspect", "render"]

TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", "-t", min=0.05, help="Seconds to wait for the workers' answers"),
]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render(worker: dict[str, Any]) -> None:
    stats = worker.get("stats", {})
    console.print(
        f"[bold]{worker['worker']}[/] app={worker.get('app')} pool={worker.get('pool')} "
        f"concurrency={worker.get('concurrency')} prefetch={worker.get('prefetch')} "
        f"queues={','.join(worker.get('queues', []))} uptime={_duration(stats.get('uptime', 0))} "
        f"reconnects={stats.get('reconnects', 0)} amqpq={worker.get('version', '?')}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "  stats: "
        + " ".join(
            f"{key}={stats.get(key, 0)}"
            for key in ("processed", "succeeded", "failed", "retried", "rejected", "revoked")
        )
        + f" events={'on' if worker.get('events') else 'off'}"
        + (f" metrics=:{worker['metrics_port']}" if worker.get("metrics_port") else ""),
        highlight=False,
    )
    registered = worker.get("registered", [])
    limits = worker.get("rate_limits", {})
    console.print(
        f"  registered ({len(registered)}): "
        + ", ".join(f"{n} [{limits[n]}]" if n in limits else n for n in registered),
        highlight=False,
        soft_wrap=True,
    )
    active = worker.get("active", [])
    if not active:
        console.print("  active: none", highlight=False)
        return
    console.print(f"  active ({len(active)}):", highlight=False)
    for task in active:
        console.print(
            f"    {task['id']} {task['task']}"
            + (f" ({task['shadow']})" if task.get("shadow") else "")
            + f" queue={task['queue']} "
            f"started={task['started_at']} runtime={task['runtime']:.1f}s",
            highlight=False,
            soft_wrap=True,
        )


@handle_errors
def inspect(
    topology: TopologyOption = None,
    url: UrlOption = None,
    timeout: TimeoutOption = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
) -> None:
    """Ask every live worker what it runs: tasks, active tasks with runtime, stats, pool.

    Exits 1 when no worker answers within --timeout (a usable health check).
    """
    settings = settings_from(url, topology)
    prefix = load_for(settings, topology).infrastructure.prefix
    replies = asyncio.run(broadcast(settings, "inspect", prefix=prefix, timeout=timeout))
    workers = [r.data for r in replies if r.ok]
    if json_output:
        console.print_json(json.dumps({"workers": workers}, default=str))
    else:
        for worker in workers:
            render(worker)
        for reply in replies:
            if not reply.ok:
                err_console.print(f"{reply.worker}: {reply.error}", highlight=False)
    if not workers:
        err_console.print(f"no workers answered within {timeout:g}s", highlight=False)
        raise typer.Exit(int(ExitCode.FAILURE))
