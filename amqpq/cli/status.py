"""``amqpq status``: the topology's queues, the live workers and beats, from the management API.

Figures come from the management API's statistics, which RabbitMQ refreshes
every ``collect_statistics_interval`` (5 s by default): counts and rates may lag
by that much. ``amqpq dlq list`` gives exact dead-letter counts over AMQP.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from amqpq.cli.common import TopologyOption, UrlOption, console, handle_errors, settings_from
from amqpq.cli.reach import check_amqp
from amqpq.cli.tables import folding_table
from amqpq.errors import AmqpqError
from amqpq.settings import Settings
from amqpq.topology.infra import (
    DELAY_LEVELS,
    beat_leader_queue_name,
    control_exchange_name,
    dead_letter_queue_name,
    delay_queue_name,
    revocations_queue_name,
    work_queues,
)
from amqpq.topology.loader import resolve_topology
from amqpq.topology.models import Topology
from amqpq.transport.management import ManagementClient

__all__ = ["BEAT_PREFIX", "WORKER_PREFIX", "collect_status", "status"]

WORKER_PREFIX = "amqpq worker "
BEAT_PREFIX = "amqpq beat "


def _rate(stats: dict[str, Any], key: str) -> float:
    details = stats.get(f"{key}_details")
    if isinstance(details, dict):
        rate = details.get("rate")
        if isinstance(rate, int | float):
            return float(rate)
    return 0.0


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _connection_name(connection: dict[str, Any]) -> str:
    properties = connection.get("client_properties") or {}
    return str(connection.get("user_provided_name") or properties.get("connection_name") or "")


def _process(connection: dict[str, Any], name: str, prefix: str) -> dict[str, Any]:
    """What a named amqpq connection says about its process (``amqpq <role> <host>:<pid>``)."""
    host, _, pid = name[len(prefix) :].rpartition(":")
    connected = connection.get("connected_at")
    return {
        "name": name,
        "host": host,
        "pid": int(pid) if pid.isdigit() else None,
        "peer": f"{connection.get('peer_host')}:{connection.get('peer_port')}",
        "state": connection.get("state"),
        "connected_at": datetime.fromtimestamp(connected / 1000, UTC).isoformat(timespec="seconds")
        if isinstance(connected, int | float)
        else None,
    }


def _beat_role(consumer: dict[str, Any] | None) -> str:
    """The broker's single active consumer of the leader queue is the leader (docs/scheduler.md)."""
    if consumer is None:
        return "starting"  # connected, not consuming the leader queue yet (or any more)
    active = consumer.get("active")
    if not isinstance(active, bool):  # brokers without the flag: only its status
        active = consumer.get("activity_status") in ("single_active", "up")
    return "leader" if active else "standby"


def collect_status(
    settings: Settings, topology: Topology, source: str | None = None
) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (the ``--json`` document); ``source``
    is the topology file (or the built-in default) the queues come from."""
    vhost = settings.vhost
    infra = topology.infrastructure
    with ManagementClient.from_settings(settings) as api:
        broker_queues = {q["name"]: q for q in api.list_queues(vhost)}
        connections = api.list_connections(vhost)
        consumers = api.list_consumers(vhost)
    check_amqp(settings)

    work = {q.name for q in work_queues(topology)}
    queues: list[dict[str, Any]] = []
    for queue in topology.queues:
        found = broker_queues.get(queue.name)
        stats = (found or {}).get("message_stats") or {}
        dead: int | None = None
        if infra.dead_letters and queue.name in work:
            dlq = broker_queues.get(dead_letter_queue_name(queue.name))
            if dlq is not None:
                dead = _int(dlq.get("messages"))
        queues.append(
            {
                "name": queue.name,
                "type": (found or {}).get("type", queue.type),
                "exists": found is not None,
                "ready": _int((found or {}).get("messages_ready")),
                "unacked": _int((found or {}).get("messages_unacknowledged")),
                "consumers": _int((found or {}).get("consumers")),
                "publish_rate": _rate(stats, "publish"),
                "deliver_rate": _rate(stats, "deliver_get"),
                "dead_letters": dead,
            }
        )

    delayed: int | None = None
    if infra.delay:
        delayed = sum(
            _int(broker_queues.get(delay_queue_name(infra.prefix, level), {}).get("messages"))
            for level in range(DELAY_LEVELS)
        )

    by_connection: dict[str, list[dict[str, Any]]] = {}
    # A worker also consumes its control queue and the revocations stream: not work.
    own = (f"{control_exchange_name(infra.prefix)}.", revocations_queue_name(infra.prefix))
    leader_queue = beat_leader_queue_name(infra.prefix)
    beat_consumers: dict[str, dict[str, Any]] = {}
    for consumer in consumers:
        details = consumer.get("channel_details") or {}
        queue_name = str((consumer.get("queue") or {}).get("name", ""))
        if queue_name == leader_queue:
            beat_consumers[str(details.get("connection_name", ""))] = consumer
            continue
        if queue_name.startswith(own):
            continue
        by_connection.setdefault(str(details.get("connection_name", "")), []).append(
            {
                "queue": queue_name,
                "consumer_tag": consumer.get("consumer_tag"),
                "prefetch": consumer.get("prefetch_count"),
            }
        )
    workers: list[dict[str, Any]] = []
    beats: list[dict[str, Any]] = []
    for connection in connections:
        name = _connection_name(connection)
        if name.startswith(WORKER_PREFIX):
            workers.append(
                {
                    **_process(connection, name, WORKER_PREFIX),
                    "channels": _int(connection.get("channels")),
                    "consumers": by_connection.get(str(connection.get("name")), []),
                }
            )
        elif name.startswith(BEAT_PREFIX):
            on_leader_queue = beat_consumers.get(str(connection.get("name")))
            beats.append(
                {
                    **_process(connection, name, BEAT_PREFIX),
                    "role": _beat_role(on_leader_queue),
                    "queue": leader_queue,
                    "consumer_tag": None
                    if on_leader_queue is None
                    else on_leader_queue.get("consumer_tag"),
                }
            )
    workers.sort(key=lambda w: w["name"])
    # The leader first, then standbys, then beats still starting.
    order = {"leader": 0, "standby": 1, "starting": 2}
    beats.sort(key=lambda b: (order[b["role"]], b["name"]))
    return {
        "vhost": vhost,
        "topology": source,
        "broker": settings.primary.display,
        "management": settings.management_base_url,
        "queues": queues,
        "delayed": delayed,
        "workers": workers,
        "schedules": len(topology.schedules),
        "next_runs": _next_runs(topology),
        "beats": beats,
    }


def _next_runs(topology: Topology) -> list[dict[str, str]]:
    """Each schedule's next tick from now, as the beat computes it (its own time zone + UTC)."""
    if not topology.schedules:
        return []
    from amqpq.beat.ticks import describe_next_run, next_tick_after, tick_iso

    now = datetime.now(UTC)
    return [
        {
            "schedule": name,
            "task": schedule.task,
            "next_run": tick_iso(next_tick_after(schedule, now)),
            "next_run_local": describe_next_run(schedule, now),
        }
        for name, schedule in topology.schedules.items()
    ]


def _render(document: dict[str, Any]) -> RenderableType:
    columns = ("queue", "type", "ready", "unacked", "consumers", "publish/s", "deliver/s")
    queues = folding_table(
        f"queues in vhost {document['vhost']!r} (management stats, may lag ~5 s)",
        [*columns, "dead letters"],
        right=[*columns[2:], "dead letters"],
    )
    for q in document["queues"]:
        if not q["exists"]:
            queues.add_row(q["name"], q["type"], "[yellow]missing[/]", *[""] * 5)
            continue
        dead = q["dead_letters"]
        queues.add_row(
            Text(q["name"]),
            q["type"],
            str(q["ready"]),
            str(q["unacked"]),
            str(q["consumers"]) if q["consumers"] else "[yellow]0[/]",
            f"{q['publish_rate']:.1f}",
            f"{q['deliver_rate']:.1f}",
            "-" if dead is None else (f"[bold red]{dead}[/]" if dead else "0"),
        )
    parts: list[RenderableType] = [queues]
    if document.get("topology"):
        # Which file the queues above come from: a command run from another folder than
        # the project's reads that folder's amqpq.yaml, or the built-in default.
        where = document["topology"]
        if where.startswith("<"):  # no file: say so, as the queues may not be the project's
            parts.insert(0, Text(f"topology: {where} (no ./amqpq.yaml here; -f FILE)", "yellow"))
        else:
            parts.insert(0, Text(f"topology: {where}"))
    if document["delayed"] is not None:
        parts.append(Text(f"delayed (waiting in the delay levels): {document['delayed']}"))
    workers = folding_table(
        f"workers ({len(document['workers'])})", ["worker", "connected", "channels", "consuming"]
    )
    for w in document["workers"]:
        consuming = ", ".join(f"{c['queue']} (prefetch {c['prefetch']})" for c in w["consumers"])
        workers.add_row(
            Text(w["name"][len(WORKER_PREFIX) :]),
            w["connected_at"] or "-",
            str(w["channels"]),
            Text(consuming or "-"),
        )
    parts.append(workers if document["workers"] else Text("no worker is connected"))
    beats = _render_beats(document)
    if beats is not None:
        parts.append(beats)
    if document.get("next_runs"):
        schedules = folding_table("schedules", ["schedule", "task", "next run"])
        for run in document["next_runs"]:
            schedules.add_row(Text(run["schedule"]), Text(run["task"]), run["next_run_local"])
        parts.append(schedules)
    return Group(*parts)


def _render_beats(document: dict[str, Any]) -> RenderableType | None:
    """The beats; nothing when there are none and the file has no schedules to send."""
    beats = document["beats"]
    if not beats:
        if document["schedules"]:
            return Text("no beat is connected: the schedules are not being sent", style="yellow")
        return None
    leaders = sum(1 for b in beats if b["role"] == "leader")
    table = folding_table(
        f"beats ({len(beats)}, leader on {beats[0]['queue']})",
        ["beat", "role", "connected", "connection"],
    )
    styles = {"leader": "bold green", "standby": "", "starting": "yellow"}
    for b in beats:
        table.add_row(
            Text(b["name"][len(BEAT_PREFIX) :]),
            Text(b["role"], style=styles[b["role"]]),
            b["connected_at"] or "-",
            Text(b["name"]),
        )
    if leaders:
        return table
    return Group(table, Text("no beat leads yet: the schedules are not being sent", style="yellow"))


@handle_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[
        float | None,
        typer.Option("--watch", "-w", min=0.5, help="Refresh every S seconds; Ctrl-C exits."),
    ] = None,
    topology: TopologyOption = None,
    url: UrlOption = None,
) -> None:
    """Queues of the topology (ready, unacked, consumers, rates, dead letters), live workers
    and beats (leader, standby)."""
    settings = settings_from(url, topology)
    source, parsed = resolve_topology(settings.named_topology(topology))
    if not source.startswith("<"):
        source = os.path.abspath(source)
    if watch is None:
        document = collect_status(settings, parsed, source)
        if as_json:
            typer.echo(json.dumps(document, indent=2))
        else:
            console.print(_render(document))
        return
    try:
        if as_json:
            while True:  # one JSON document per line, for tools that follow a stream
                typer.echo(json.dumps(collect_status(settings, parsed, source)))
                time.sleep(watch)
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                try:
                    view: RenderableType = _render(collect_status(settings, parsed, source))
                except AmqpqError as exc:  # keep watching through a broker restart
                    view = Text(f"error: {exc} (retrying)", style="bold red")
                stamp = datetime.now().strftime("%H:%M:%S")
                live.update(Group(view, Text(f"{stamp}, every {watch:g}s, Ctrl-C to quit")))
                live.refresh()
                time.sleep(watch)
    except KeyboardInterrupt:
        return
