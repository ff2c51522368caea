"""``amqpq events``: task and worker events as they happen."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from amqpq.cli.common import TopologyOption, UrlOption, console, handle_errors, settings_from
from amqpq.cli.purge import load_for
from amqpq.codec import MessageProperties
from amqpq.events import TASK_STATES, decode_record
from amqpq.settings import Settings
from amqpq.topology.infra import events_stream_name
from amqpq.transport.aio import AsyncBroker
from amqpq.transport.broadcast import StreamReader

__all__ = ["events", "matches", "parse_since"]


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


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: a duration back from now (``90s``, ``15m``, ``2h``, ``7d``) or an ISO time."""
    from amqpq.errors import ConfigError

    now = now or datetime.now(UTC)
    value = text.strip()
    unit = _UNITS.get(value[-1:].lower()) if value else None
    if unit is not None and value[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(seconds=float(value[:-1]) * unit)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: expected a duration (90s, 15m, 2h, 7d) or an ISO time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def matches(event: dict[str, Any], task: str | None, states: list[str], queue: str | None) -> bool:
    """The filters of ``amqpq events`` (worker events pass when no task filter is given)."""
    kind = str(event.get("type", ""))
    if kind.startswith("worker."):
        return task is None and not states
    if task is not None and event.get("task") != task:
        return False
    if states and kind.removeprefix("task.") not in states:
        return False
    return queue is None or event.get("queue") == queue


async def _follow(
    settings: Settings,
    prefix: str,
    offset: str | datetime,
    wanted: Callable[[dict[str, Any]], bool],
    as_json: bool,
    limit: int | None,
) -> None:
    broker = AsyncBroker(settings, "events")
    done = asyncio.Event()
    seen = 0

    def on_record(body: bytes, properties: MessageProperties, position: int | None) -> None:
        nonlocal seen
        for event in decode_record(body):
            if done.is_set() or not wanted(event):
                continue
            if as_json:
                print(json.dumps(event, separators=(",", ":")), flush=True)
            else:
                console.print(_line(event), highlight=False, soft_wrap=True)
            seen += 1
            if limit is not None and seen >= limit:
                done.set()

    stream = events_stream_name(prefix)
    try:
        await broker.connect()
        reader = StreamReader(broker, stream, on_record=on_record, offset=offset)
        await reader.start()
        if not as_json:
            since = (
                "" if isinstance(offset, str) else f" since {offset.isoformat(timespec='seconds')}"
            )
            console.print(
                f"[dim]reading the stream {stream}{since}; workers publish events unless "
                "started with --without-events. Ctrl-C stops.[/]",
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
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Start from this far back (90s, 15m, 2h, 7d) or this ISO time, "
            "within the stream's retention [default: only new events]",
        ),
    ] = None,
) -> None:
    """Show task and worker events from the stream amqpq.events (senders' task.sent events
    too when they run with AMQPQ_EVENTS=1)."""
    states = [s.strip().lower() for s in state or [] if s.strip()]
    unknown = [s for s in states if s not in TASK_STATES]
    if unknown:
        from amqpq.errors import ConfigError

        raise ConfigError(f"--state {','.join(unknown)}: expected one of {', '.join(TASK_STATES)}")
    settings = settings_from(url, topology)
    prefix = load_for(settings, topology).infrastructure.prefix
    offset: str | datetime = parse_since(since) if since is not None else "next"

    def wanted(event: dict[str, Any]) -> bool:
        return matches(event, task, states, queue)

    try:
        asyncio.run(_follow(settings, prefix, offset, wanted, json_output, limit))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
