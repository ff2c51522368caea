"""``amqpq worker -A module[:app] [-Q q1,q2] [-c N] [--pool threads|processes|async|solo]``.

The typer command is the source of truth for the options and ``--help``; the console
script usually parses ``amqpq worker`` without typer (``amqpq.cli.worker_args``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from amqpq.cli.common import TopologyOption, UrlOption, handle_errors
from amqpq.cli.worker_args import (
    DEFAULT_MAX_BODY_SIZE,
    PoolChoice,
    WorkerArgs,
    parse_size,
    run_worker,
)

__all__ = ["parse_size", "worker"]


@handle_errors
def worker(
    app_spec: Annotated[
        str,
        typer.Option(
            "-A",
            "--app",
            help="Module with the App: 'tasks' or 'pkg.module:app'",
            show_default=False,
        ),
    ],
    queues: Annotated[
        str | None,
        typer.Option(
            "-Q",
            "--queues",
            help="Queues to consume, comma separated [default: the file's work queues]",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "-c",
            "--concurrency",
            min=1,
            help="Execution slots (= prefetch) [default: 8 threads, 100 async, one process per core]",
        ),
    ] = None,
    pool: Annotated[
        PoolChoice, typer.Option("--pool", help="Where tasks run", case_sensitive=False)
    ] = PoolChoice.threads,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes", min=1, help="Shorthand for --pool processes -c N: N child processes"
        ),
    ] = None,
    topology: TopologyOption = None,
    url: UrlOption = None,
    loglevel: Annotated[
        str, typer.Option("--loglevel", "-l", help="DEBUG, INFO, WARNING or ERROR")
    ] = "INFO",
    no_declare: Annotated[
        bool,
        typer.Option("--no-declare", help="Do not declare the topology on start (it must exist)"),
    ] = False,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0, help="Seconds to finish in-flight tasks on SIGTERM/SIGINT"),
    ] = 30.0,
    max_body_size: Annotated[
        str,
        typer.Option("--max-body-size", help="Larger messages are dead-lettered (too_large)"),
    ] = str(DEFAULT_MAX_BODY_SIZE),
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="N independent worker processes (one connection each) under one command "
            "[default: one per core without -c/--processes, else 1]",
        ),
    ] = None,
    events: Annotated[
        bool | None,
        typer.Option(
            "--events/--without-events",
            "-E/--no-events",
            help="Publish task and worker events to the stream amqpq.events (amqpq events "
            "and amqpq dashboard read it) [env: AMQPQ_EVENTS=0 turns them off; default: on]",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve Prometheus metrics on this port (with --workers N: PORT..PORT+N-1)",
        ),
    ] = None,
) -> None:
    """Consume the topology's queues and run their tasks (late acks, prefetch = slots)."""
    code = run_worker(
        WorkerArgs(
            app_spec=app_spec,
            queues=queues,
            concurrency=concurrency,
            pool=pool,
            processes=processes,
            topology=topology,
            url=url,
            loglevel=loglevel,
            no_declare=no_declare,
            grace=grace,
            max_body_size=max_body_size,
            workers=workers,
            events=events,
            metrics_port=metrics_port,
        )
    )
    if code:
        raise typer.Exit(code)
