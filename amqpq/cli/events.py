"""``amqpq events``: task and worker events as they happen."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Annotated, Any

import typer

from amqpq.cli.common import TopologyOption, UrlOption, console, handle_errors, settings_from
from amqpq.cli.purge import load_for
from amqpq.codec import MessageProperties
from amqpq.events import TASK_STATES
from amqpq.settings import Settings
from amqpq.topology.infra import events_exchange_name
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.broadcast import Subscription, exchange_exists

__all__ = ["binding_keys", "events"]


def binding_keys(task: str | None, states: list[str]) -> list[str]:
    """Topic keys for the filters (the queue filter is applied on the body)."""
    task_part = task or "#"
    keys = [f"task.{state}.{task_part}" for state in states] or [f"task.*.{task_part}"]
    if not task and not states:
        keys.append("worker.*")
    return keys


def _line(event: dict[str, Any]) -> str:
    kind = event.get("type", "?")
    when = str(event.get("timestamp", ""))[11:23]
    if kind.startswith("worker."):
        extra = " ".join(
            f"{k}={event[k]}" for k in ("active", "processed", "uptime", "pool") if k in event
        )
        return f"{when} {kind:<17} {event.get('worker', '')} {extra}".rstrip()
    parts = [f"{when} {kind:<17} {event.get('task', '')}[{event.get('id', '')}]"]
    if event.get("shadow"):
        parts.append(f"({event['shadow']})")
    for key in ("queue", "worker", "runtime", "retries", "reason", "error"):
        if event.get(key) is not None:
            value = event[key]
            parts.append(f"{key}={value:.3f}s" if key == "runtime" else f"{key}={value}")
    return " ".join(parts)


async def _follow(
    settings: Settings,
    prefix: str,
    keys: list[str],
    queue: str | None,
    as_json: bool,
    limit: int | None,
) -> None:
    broker = AsyncBroker(settings, "events")
    done = asyncio.Event()
    seen = 0

    def on_message(body: bytes, properties: MessageProperties, key: str) -> None:
        nonlocal seen
        try:
            event = json.loads(body)
        except ValueError:
            return
        if (
            queue is not None
            and event.get("queue") != queue
            and event.get("type", "").startswith("task.")
        ):
            return
        if as_json:
            print(json.dumps(event, separators=(",", ":")), flush=True)
        else:
            console.print(_line(event), highlight=False, soft_wrap=True)
        seen += 1
        if limit is not None and seen >= limit:
            done.set()

    exchange = events_exchange_name(prefix)
    try:
        await broker.connect()
        await exchange_exists(broker, exchange)
        subscription = Subscription(
            broker,
            exchange=exchange,
            queue=f"{exchange}.watch.{socket.gethostname()}.{os.getpid()}",
            routing_keys=keys,
            on_message=on_message,
            arguments={"x-max-length": 100_000},
        )
        await subscription.start()
        if not as_json:
            console.print(
                f"[dim]listening on {exchange} ({', '.join(keys)}); workers publish events "
                "when started with --events. Ctrl-C stops.[/]",
                highlight=False,
            )
        await done.wait()
    finally:
        await broker.close()


@handle_errors
def events(
    topology: TopologyOption = None,
    url: UrlOption = None,
    task: Annotated[str | None, typer.Option("--task", help="Only this task name")] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-Q", help="Only tasks of this queue")
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            "-s",
            help=f"Only these task states (repeatable): {', '.join(TASK_STATES)}",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Stop after N events")
    ] = None,
) -> None:
    """Show task and worker events live (workers run with --events; senders with AMQPQ_EVENTS=1)."""
    states = [s.strip().lower() for s in state or [] if s.strip()]
    unknown = [s for s in states if s not in TASK_STATES]
    if unknown:
        from amqpq.errors import ConfigError

        raise ConfigError(f"--state {','.join(unknown)}: expected one of {', '.join(TASK_STATES)}")
    settings = settings_from(url, topology)
    prefix = load_for(settings, topology).infrastructure.prefix
    try:
        asyncio.run(
            _follow(settings, prefix, binding_keys(task, states), queue, json_output, limit)
        )
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
