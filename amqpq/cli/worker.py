"""``amqpq worker -A module[:app] [-Q q1,q2] [-c N] [--pool threads|processes|async]``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from amqpq.cli.common import (
    TopologyOption,
    UrlOption,
    handle_errors,
    settings_from,
    setup_logging,
)
from amqpq.errors import ConfigError
from amqpq.events import events_enabled_by_default
from amqpq.topology.loader import load_topology
from amqpq.worker import DEFAULT_MAX_BODY_SIZE, Worker, WorkerOptions, load_app, resolve_queues
from amqpq.worker.supervisor import supervise

__all__ = ["parse_size", "worker"]


class PoolChoice(StrEnum):
    threads = "threads"
    processes = "processes"
    async_ = "async"


_SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """``10485760``, ``512KiB``, ``10MiB``, ``1G`` -> bytes (k/m/g are powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"--max-body-size {text!r}: expected bytes or a size such as 10MiB")
    unit = (match.group(2) or "b")[0].lower()
    return int(match.group(1)) * _UNITS[unit]


def _setup_logging(level: str) -> None:
    setup_logging(level)
    os.environ["AMQPQ_LOGLEVEL"] = level.upper()  # children of the processes pool


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
            "--events/--no-events",
            "-E",
            help="Publish task and worker events to amqpq.events (amqpq events shows them) "
            "[env: AMQPQ_EVENTS; default: off]",
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
    _setup_logging(loglevel)
    pool_kind = pool.value
    if processes is not None:
        if concurrency is not None and concurrency != processes:
            raise ConfigError("give either --processes N or -c N, not both")
        pool_kind, concurrency = "processes", processes
    cwd = os.getcwd()
    application = load_app(app_spec, cwd=cwd)
    settings = settings_from(url, topology) if (url or topology) else application.settings
    topo = load_topology(Path(topology)) if topology else application.topology
    options = WorkerOptions(
        app_spec=app_spec,
        queues=tuple(q.strip() for q in (queues or "").split(",") if q.strip()),
        pool=pool_kind,  # type: ignore[arg-type]
        concurrency=concurrency,
        grace=grace,
        max_body_size=parse_size(max_body_size),
        declare=not no_declare,
        cwd=cwd,
        events=events_enabled_by_default() if events is None else events,
        metrics_port=metrics_port,
    )
    if workers is None:
        # Like Celery's and Dramatiq's defaults: use the machine unless told how many slots.
        workers = (os.cpu_count() or 1) if concurrency is None and pool_kind != "processes" else 1
    if workers > 1:
        resolve_queues(topo, options.queues)  # fail once, here, not in every child
        if options.declare:
            from amqpq.transport.declare import declare_topology

            asyncio.run(declare_topology(settings, topo))
        child_options = dataclasses.replace(options, declare=False)

        def run_one() -> int:
            worker = Worker(application, child_options, settings=settings, topology=topo)
            return asyncio.run(worker.run())

        code = supervise(run_one, workers)
        if code:
            raise typer.Exit(code)
        return
    code = asyncio.run(Worker(application, options, settings=settings, topology=topo).run())
    if code:
        # Stopped before its tasks finished: threads still running them must not hold the
        # process open (their messages are already back in the queue).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
