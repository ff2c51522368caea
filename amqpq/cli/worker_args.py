"""``amqpq worker``'s options as data, a fast parser for them, and the worker's start.

typer and click (with typer's pydantic adapters) take about as long to import and
build the command line as the rest of a worker's start together, so the
console script parses ``amqpq worker ...`` with :func:`parse_worker_argv` and
calls :func:`run_worker` directly. The parser only accepts what it is sure the
typer command (``amqpq.cli.worker``, the source of truth for ``--help``)
would parse to the same values; anything else (``--help``, an unknown or
ill-formed option, a value out of range) returns None and the typer command
runs instead, with its own messages. tests/unit/test_worker_args.py proves that
both accept the same options and agree on a table of command lines.

Nothing heavy is imported here at module level: parsing costs microseconds, and
a fallback to typer pays for nothing twice.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from amqpq.cli.boundary import exit_code_for, setup_logging
from amqpq.errors import ConfigError

__all__ = [
    "FAST_OPTIONS",
    "PoolChoice",
    "WorkerArgs",
    "main",
    "parse_size",
    "parse_worker_argv",
    "run_worker",
]

DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
"""Checked equal to ``amqpq.worker.DEFAULT_MAX_BODY_SIZE`` by a test (importing that
module here would load aio-pika before the options are even parsed)."""


class PoolChoice(StrEnum):
    threads = "threads"
    processes = "processes"
    async_ = "async"
    solo = "solo"


@dataclass(frozen=True)
class WorkerArgs:
    """One ``amqpq worker`` command line, parsed (by typer or by the fast parser)."""

    app_spec: str
    queues: str | None = None
    concurrency: int | None = None
    pool: PoolChoice = PoolChoice.threads
    processes: int | None = None
    topology: Path | None = None
    url: str | None = None
    loglevel: str = "INFO"
    no_declare: bool = False
    grace: float = 30.0
    max_body_size: str = str(DEFAULT_MAX_BODY_SIZE)
    workers: int | None = None
    events: bool | None = None
    metrics_port: int | None = None


# -- the fast parser ------------------------------------------------------------------------


class _NotSure(Exception):
    """The fast parser leaves this command line to typer."""


def _text(value: str) -> str:
    # Empty or dash-led values are legal for click in places; typer decides those.
    if not value or value.startswith("-"):
        raise _NotSure
    return value


def _count(low: int, high: int | None = None) -> Callable[[str], int]:
    def convert(value: str) -> int:
        if not value.isascii() or not value.isdigit():
            raise _NotSure
        number = int(value)
        if number < low or (high is not None and number > high):
            raise _NotSure
        return number

    return convert


_DECIMAL = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")


def _seconds(value: str) -> float:
    if not _DECIMAL.match(value):
        raise _NotSure
    return float(value)


def _pool(value: str) -> PoolChoice:
    lowered = value.lower()
    if not value.isascii() or lowered not in PoolChoice._value2member_map_:
        raise _NotSure
    return PoolChoice(lowered)


def _path(value: str) -> Path:
    return Path(_text(value))


@dataclass(frozen=True)
class _Option:
    field: str
    flags: tuple[str, ...]
    convert: Callable[[str], Any] | None  # None: a flag, which sets ``flag_value``
    flag_value: Any = True


FAST_OPTIONS: tuple[_Option, ...] = (
    _Option("app_spec", ("-A", "--app"), _text),
    _Option("queues", ("-Q", "--queues"), _text),
    _Option("concurrency", ("-c", "--concurrency"), _count(1)),
    _Option("pool", ("--pool",), _pool),
    _Option("processes", ("--processes",), _count(1)),
    _Option("topology", ("-f", "--topology"), _path),
    _Option("url", ("--url",), _text),
    _Option("loglevel", ("--loglevel", "-l"), _text),
    _Option("no_declare", ("--no-declare",), None),
    _Option("grace", ("--grace",), _seconds),
    _Option("max_body_size", ("--max-body-size",), _text),
    _Option("workers", ("--workers", "-w"), _count(1)),
    _Option("events", ("--events", "-E"), None, True),
    _Option("events", ("--without-events", "--no-events"), None, False),
    _Option("metrics_port", ("--metrics-port",), _count(1, 65535)),
)
"""Every option of the typer command ``amqpq.cli.worker.worker``, flag for flag."""

_BY_FLAG = {flag: option for option in FAST_OPTIONS for flag in option.flags}


def parse_worker_argv(argv: Sequence[str]) -> WorkerArgs | None:
    """The arguments after ``worker``, or None when typer must parse them."""
    try:
        return WorkerArgs(**_parse(list(argv)))
    except (_NotSure, TypeError):  # TypeError: no -A/--app
        return None


def _parse(argv: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    while argv:
        arg = argv.pop(0)
        attached: str | None = None
        if arg.startswith("--"):
            flag, equals, rest = arg.partition("=")
            if equals:
                attached = rest
        elif arg.startswith("-") and len(arg) > 1:
            # ``-c4`` is ``-c 4`` for click; ``-Ec4`` (grouped short flags) is left to typer.
            flag, attached = arg[:2], (arg[2:] or None)
        else:
            raise _NotSure  # a positional argument: the worker command takes none
        option = _BY_FLAG.get(flag)
        if option is None:
            raise _NotSure  # --help, -h, or an unknown option
        if option.convert is None:
            if attached is not None:
                raise _NotSure
            values[option.field] = option.flag_value
            continue
        if attached is None:
            if not argv:
                raise _NotSure
            attached = argv.pop(0)
        elif attached.startswith("="):  # ``-c=4``: click reads the value "=4"
            raise _NotSure
        values[option.field] = option.convert(attached)
    return values


# -- running the worker ---------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``10485760``, ``512KiB``, ``10MiB``, ``1G`` -> bytes (k/m/g are powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"--max-body-size {text!r}: expected bytes or a size such as 10MiB")
    unit = (match.group(2) or "b")[0].lower()
    return int(match.group(1)) * _UNITS[unit]


_SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def run_worker(args: WorkerArgs) -> int:
    """Run the worker (or the supervisor of ``--workers N``) until it stops; its exit code.

    Raises amqpq errors for the caller's error boundary.
    """
    import asyncio

    from amqpq.events import worker_events_by_default
    from amqpq.topology.loader import load_topology
    from amqpq.worker import Worker, WorkerOptions, load_app, resolve_queues

    setup_logging(args.loglevel)
    os.environ["AMQPQ_LOGLEVEL"] = args.loglevel.upper()  # children of the processes pool
    pool_kind: str = args.pool.value
    concurrency = args.concurrency
    if args.processes is not None:
        if concurrency is not None and concurrency != args.processes:
            raise ConfigError("give either --processes N or -c N, not both")
        pool_kind, concurrency = "processes", args.processes
    cwd = os.getcwd()
    application = load_app(args.app_spec, cwd=cwd)
    if args.url or args.topology:
        from amqpq.settings import load_settings

        settings = load_settings(url=args.url, topology=args.topology)
    else:
        settings = application.settings
    topo = load_topology(Path(args.topology)) if args.topology else application.topology
    source = os.path.abspath(args.topology) if args.topology else None  # for the start line
    options = WorkerOptions(
        app_spec=args.app_spec,
        queues=tuple(q.strip() for q in (args.queues or "").split(",") if q.strip()),
        pool=pool_kind,  # type: ignore[arg-type]
        concurrency=concurrency,
        grace=args.grace,
        max_body_size=parse_size(args.max_body_size),
        declare=not args.no_declare,
        cwd=cwd,
        events=worker_events_by_default() if args.events is None else args.events,
        metrics_port=args.metrics_port,
    )
    workers = args.workers
    if workers is None:
        # Like Celery's and Dramatiq's defaults: use the machine unless told how many slots.
        workers = (os.cpu_count() or 1) if concurrency is None and pool_kind != "processes" else 1
    if workers > 1:
        from amqpq.worker.supervisor import supervise

        resolve_queues(topo, options.queues)  # fail once, here, not in every child
        if options.declare:
            from amqpq.worker.main import declare_until_done

            asyncio.run(declare_until_done(settings, topo))
        _preload(topo.infrastructure.operations)
        child_options = dataclasses.replace(options, declare=False)

        def run_one() -> int:
            worker = Worker(
                application,
                child_options,
                settings=settings,
                topology=topo,
                topology_source=source,
            )
            return asyncio.run(worker.run())

        # Everything loaded so far lives as long as the workers: out of the collector's
        # reach, a worker's collections never write to (and so never copy) those pages.
        gc.freeze()
        return supervise(run_one, workers)
    worker = Worker(application, options, settings=settings, topology=topo, topology_source=source)
    code = asyncio.run(worker.run())
    if code:
        # Stopped before its tasks finished: threads still running them must not hold the
        # process open (their messages are already back in the queue).
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _preload(operations: bool) -> None:
    """Import what every forked worker imports on start (the consumer_timeout check;
    revocations and control with ``operations``) and read the version its start line
    shows: once, before the fork, so the workers share those pages and skip that work."""
    import amqpq.worker.consumer_timeout
    from amqpq.worker.operations import package_version

    package_version()
    if operations:
        import amqpq.control
        import amqpq.revocations
        import amqpq.transport.broadcast  # noqa: F401


def main(argv: Sequence[str]) -> None:
    """``amqpq worker ARGS`` without the CLI framework, when the fast parser is sure of
    ``argv``; returns (doing nothing) when typer must parse it."""
    args = parse_worker_argv(argv)
    if args is None:
        return
    try:
        code = run_worker(args)
    except (Exception, KeyboardInterrupt) as exc:
        exit_code = exit_code_for(exc)
        if exit_code is None:
            raise
        sys.exit(exit_code)
    sys.exit(code)
