"""What every command shares: the options that reach the broker and the error boundary."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from amqpq.cli import boundary
from amqpq.cli.boundary import setup_logging as setup_logging
from amqpq.errors import AmqpqError, ExitCode
from amqpq.settings import Settings, load_settings

if TYPE_CHECKING:
    from rich.console import Console

    console: Console
    err_console: Console

P = ParamSpec("P")
R = TypeVar("R")


def __getattr__(name: str) -> Any:
    # ``console`` and ``err_console`` are created on first use: importing rich costs a
    # worker start-up time and memory for output it never prints.
    if name in ("console", "err_console"):
        return boundary.console(stderr=name == "err_console")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


TopologyOption = Annotated[
    Path | None,
    typer.Option(
        "-f", "--topology", help="Topology file [env: AMQPQ_TOPOLOGY; default ./amqpq.yaml]"
    ),
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Broker URL(s), comma separated [env: AMQPQ_URL]"),
]


def settings_from(url: str | None, topology: Path | None = None) -> Settings:
    return load_settings(url=url, topology=topology)


def fail(message: str, code: ExitCode = ExitCode.FAILURE) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise."""
    boundary.print_error(message)
    return typer.Exit(int(code))


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """The CLI boundary: amqpq errors become one readable line and a named exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (AmqpqError, KeyboardInterrupt, OSError) as exc:
            code = boundary.exit_code_for(exc)
            assert code is not None  # every one of these is a user-facing error
            raise typer.Exit(code) from None

    return wrapper


def is_interactive() -> bool:
    return sys.stdin.isatty()
