"""``amqpq beat [-A module[:app]] [-f amqpq.yaml] [--url URL]``: the scheduler."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

from amqpq.cli.common import (
    TopologyOption,
    UrlOption,
    handle_errors,
    settings_from,
    setup_logging,
)

__all__ = ["beat"]


@handle_errors
def beat(
    app_spec: Annotated[
        str | None,
        typer.Option(
            "-A",
            "--app",
            help="Module with the App ('tasks' or 'pkg.module:app'); optional: tasks are sent "
            "by name, but with it their arguments are validated before sending",
            show_default=False,
        ),
    ] = None,
    topology: TopologyOption = None,
    url: UrlOption = None,
    loglevel: Annotated[
        str, typer.Option("--loglevel", "-l", help="DEBUG, INFO, WARNING or ERROR")
    ] = "INFO",
    catch_up: Annotated[
        float,
        typer.Option(
            "--catch-up",
            min=0,
            help="Seconds: missed ticks this recent are all sent (a leader handover loses "
            "none); older missed ticks are sent once, the latest only",
        ),
    ] = 60.0,
    no_declare: Annotated[
        bool,
        typer.Option("--no-declare", help="Do not declare the topology on start (it must exist)"),
    ] = False,
) -> None:
    """Send the topology's schedules on time. Run as many as you like: exactly one sends."""
    from amqpq.app import App
    from amqpq.beat import Beat, BeatOptions
    from amqpq.topology.loader import load_topology

    setup_logging(loglevel)
    if app_spec:
        from amqpq.worker.loader import load_app

        application = load_app(app_spec, cwd=os.getcwd())
        settings = settings_from(url, topology) if (url or topology) else application.settings
        topo = load_topology(topology) if topology else application.topology
    else:
        settings = settings_from(url, topology)
        topo = load_topology(settings.topology_path(topology))
        application = App(settings=settings, topology=topo)
    options = BeatOptions(catch_up=catch_up, declare=not no_declare)
    code = asyncio.run(Beat(application, topo, settings, options).run())
    if code:
        raise typer.Exit(code)
