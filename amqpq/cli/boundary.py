"""The CLI's error boundary and log set-up, without typer or click.

Shared by the typer commands (through ``amqpq.cli.common``) and by the fast
``amqpq worker`` entry, which must not import the CLI framework: both print the
same one line per error and exit with the same code. rich is imported only when
something is printed.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from amqpq.errors import AmqpqError, ConfigError, ExitCode, TopologyError
from amqpq.transport.library_logs import LIBRARY_LOGGERS

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "exit_code_for", "print_error", "setup_logging"]

_consoles: dict[bool, Console] = {}


def console(*, stderr: bool = False) -> Console:
    """The rich console for stdout or stderr, created on first use."""
    if stderr not in _consoles:
        from rich.console import Console

        _consoles[stderr] = Console(stderr=stderr)
    return _consoles[stderr]


def print_error(message: str) -> None:
    from rich.markup import escape  # a message may hold brackets: pip install 'amqpq[x]'

    console(stderr=True).print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
    )


def exit_code_for(exc: BaseException) -> int | None:
    """Print what a user needs to read about ``exc`` and return the exit code, or None
    for an exception that is not a user's mistake (it keeps its traceback)."""
    if isinstance(exc, TopologyError):
        for problem in exc.problems:
            print_error(str(problem))
        return int(exc.exit_code)
    if isinstance(exc, AmqpqError):
        print_error(str(exc))
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, OSError):  # files the user named, sockets
        print_error(str(exc))
        return int(ExitCode.FAILURE)
    return None


def setup_logging(level: str) -> None:
    """One log format for the long-running commands (worker, beat), on stderr."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"--loglevel {level!r}: use DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(
        level=numeric,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # The client libraries log each failed attempt and lost connection themselves, with
    # tracebacks, before amqpq says it in one line: only at debug level (their INFO and
    # above then; their own DEBUG is a frame-by-frame account). The transport filters
    # them the same way for processes that never call this (amqpq.transport.library_logs).
    quiet = numeric > logging.DEBUG
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1 if quiet else logging.INFO)
