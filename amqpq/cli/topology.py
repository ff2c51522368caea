"""``amqpq topology validate | plan | apply | export | graph | import-celery``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Literal

import typer

from amqpq.cli.common import (
    TopologyOption,
    UrlOption,
    console,
    err_console,
    handle_errors,
    settings_from,
)
from amqpq.cli.reach import check_amqp
from amqpq.errors import ExitCode, ManagementAPIError
from amqpq.settings import Settings
from amqpq.topology.definitions import topology_definitions
from amqpq.topology.graph import render_graph
from amqpq.topology.infra import effective_topology
from amqpq.topology.loader import resolve_topology
from amqpq.topology.models import Topology
from amqpq.topology.plan import SYMBOLS, Action, Plan, plan_topology
from amqpq.transport.declare import declare_topology_sync
from amqpq.transport.management import ManagementClient

app = typer.Typer(
    help="Declare, check and draw the broker topology from amqpq.yaml.", no_args_is_help=True
)

AllOption = Annotated[
    bool, typer.Option("--all", help="List amqpq's own infrastructure object by object.")
]
OutputOption = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")
]
_STYLES = {
    "create": "green",
    "unchanged": "dim",
    "conflict": "bold red",
    "only_on_broker": "yellow",
    "skip": "cyan",
}


def _load(settings: Settings, topology: Path | None) -> tuple[str, Topology]:
    return resolve_topology(settings.named_topology(topology))


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _print_line(text: str, style: str) -> None:
    # markup off: names and header values may contain [brackets].
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _print_plan(plan: Plan, *, show_all: bool) -> None:
    """File objects one per line; infrastructure summed up per action unless ``show_all``."""
    collapsed: dict[Action, dict[str, int]] = {}
    for item in plan.items:
        if item.managed_by_amqpq and not show_all and item.action != "conflict":
            counts = collapsed.setdefault(item.action, {})
            counts[item.kind] = counts.get(item.kind, 0) + 1
            continue
        _print_line(item.line(), _STYLES[item.action])
    for action, counts in collapsed.items():
        symbol = SYMBOLS[action]
        parts = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in counts.items())
        verb = {"create": "to create", "unchanged": "unchanged"}.get(action, action)
        _print_line(
            f"{symbol} amqpq infrastructure: {parts} {verb} (--all lists them)", _STYLES[action]
        )


def _plan(settings: Settings, topology: Topology) -> Plan:
    with ManagementClient.from_settings(settings) as api:
        if not api.vhost_exists(settings.vhost):
            err_console.print(
                f"note: vhost {settings.vhost!r} does not exist yet; create it before apply",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        snapshot = api.snapshot(settings.vhost)
    return plan_topology(effective_topology(topology), snapshot)


def _conflict_exit(plan: Plan) -> typer.Exit:
    for item in plan.conflicts:
        err_console.print(
            f"conflict: {item.kind} {item.name}: {'; '.join(item.details)}",
            style="bold red",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    err_console.print(
        f"error: {len(plan.conflicts)} object(s) on the broker differ from the file; "
        "nothing was declared. Delete or rename them (RabbitMQ cannot change them in place).",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return typer.Exit(int(ExitCode.CONFLICT))


@app.command()
@handle_errors
def validate(topology: TopologyOption = None) -> None:
    """Check the file offline: schema, references, what RabbitMQ would refuse, dead routes."""
    path, parsed = _load(settings_from(None, topology), topology)
    _say(
        f"ok: {path} ({len(parsed.exchanges)} exchanges, {len(parsed.queues)} queues, "
        f"{len(parsed.routes)} routes, {len(parsed.schedules)} schedules)"
    )


@app.command()
@handle_errors
def plan(
    topology: TopologyOption = None, url: UrlOption = None, show_all: AllOption = False
) -> None:
    """Compare the file with the live broker (management API).

    + to create, = unchanged, ! conflict, - only on the broker, ~ skipped.
    Exits 5 when something conflicts.
    """
    settings = settings_from(url, topology)
    _, parsed = _load(settings, topology)
    result = _plan(settings, parsed)
    check_amqp(settings)
    _print_plan(result, show_all=show_all)
    _say(f"plan: {result.summary()}")
    if result.has_conflicts:
        raise typer.Exit(int(ExitCode.CONFLICT))


@app.command()
@handle_errors
def apply(
    topology: TopologyOption = None,
    url: UrlOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check for conflicts and show the plan only.")
    ] = False,
    show_all: AllOption = False,
) -> None:
    """Declare the file (and amqpq's infrastructure) on the broker; idempotent.

    Refuses the whole file, declaring nothing, when an object exists with other
    settings (exit 5).
    """
    # The client library logs connection failures we report ourselves as one line.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    settings = settings_from(url, topology)
    path, parsed = _load(settings, topology)
    try:
        result = _plan(settings, parsed)
    except ManagementAPIError as exc:
        err_console.print(
            f"warning: {exc}; checking for conflicts over AMQP only",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    else:
        _print_plan(result, show_all=show_all)
        if result.has_conflicts:
            raise _conflict_exit(result)
    outcome = declare_topology_sync(settings, parsed, check_only=dry_run)
    target = settings.primary.display
    if dry_run:
        _say(f"dry run: {path} can be applied to {target}; nothing was declared")
        return
    _say(f"applied {path} to {target}: {outcome.summary()}")


@app.command()
@handle_errors
def export(
    topology: TopologyOption = None,
    output: OutputOption = None,
    vhost: Annotated[
        str | None,
        typer.Option(
            "--vhost",
            help="Name this vhost in every object (the form load_definitions reads at boot). "
            "Without it the JSON imports into whichever vhost it is given.",
        ),
    ] = None,
) -> None:
    """Print RabbitMQ definitions JSON (management UI import, POST /api/definitions/VHOST)."""
    _, parsed = _load(settings_from(None, topology), topology)
    text = json.dumps(topology_definitions(effective_topology(parsed), vhost), indent=2) + "\n"
    _write(text, output)


@app.command()
@handle_errors
def graph(
    topology: TopologyOption = None,
    fmt: Annotated[
        str, typer.Option("--format", help="mermaid or dot (Graphviz).", case_sensitive=False)
    ] = "mermaid",
    show_all: Annotated[
        bool, typer.Option("--all", help="Draw every infrastructure object instead of summaries.")
    ] = False,
    output: OutputOption = None,
) -> None:
    """Draw the routing: task routes -> exchanges -> queues."""
    chosen = fmt.lower()
    if chosen not in ("mermaid", "dot"):
        err_console.print(
            f"error: --format must be mermaid or dot, got {fmt!r}", markup=False, highlight=False
        )
        raise typer.Exit(int(ExitCode.USAGE))
    kind: Literal["mermaid", "dot"] = "dot" if chosen == "dot" else "mermaid"
    _, parsed = _load(settings_from(None, topology), topology)
    _write(render_graph(parsed, kind, show_all=show_all), output)


@app.command("import-celery")
@handle_errors
def import_celery(
    spec: Annotated[
        str,
        typer.Argument(
            metavar="MODULE[:APP]",
            help="The module of the Celery app (imported from the current directory), "
            "e.g. proj.celery:app.",
        ),
    ],
    output: OutputOption = None,
) -> None:
    """Print the amqpq.yaml of a Celery app: its task_queues, task_routes and beat_schedule.

    Every route says protocol: celery (Celery workers still serve the tasks); the file's
    comments say how to keep Celery from re-declaring amqpq's queues (docs/celery.md).
    """
    # Only this command needs it: importing a user's Celery app is not cheap.
    from amqpq.topology.celery_import import import_celery_app, load_celery_app

    imported = import_celery_app(load_celery_app(spec))
    _write(imported.to_yaml(spec), output)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}", markup=False, highlight=False)
