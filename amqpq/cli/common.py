"""What every command shares: the options that reach the broker and the error boundary."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from amqpq.errors import AmqpqError, ConfigError, ExitCode, TopologyError
from amqpq.settings import Settings, load_settings

if TYPE_CHECKING:
    from rich.console import Console

    console: Console
    err_console: Console

P = ParamSpec("P")
R = TypeVar("R")

_consoles: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    # ``console`` and ``err_console`` are created on first use: importing rich costs a
    # worker start-up time and memory for output it never prints.
    if name in ("console", "err_console"):
        if name not in _consoles:
            from rich.console import Console

            _consoles[name] = Console(stderr=name == "err_console")
        return _consoles[name]
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
    __getattr__("err_console").print(
        f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True
    )
    return typer.Exit(int(code))


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """The CLI boundary: amqpq errors become one readable line and a named exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except TopologyError as exc:
            for problem in exc.problems:
                __getattr__("err_console").print(
                    f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True
                )
            raise typer.Exit(int(exc.exit_code)) from None
        except AmqpqError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except OSError as exc:  # files the user named, sockets
            raise fail(str(exc), ExitCode.FAILURE) from None

    return wrapper


def is_interactive() -> bool:
    return sys.stdin.isatty()


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
    # aio-pika's own reconnect chatter is repeated by amqpq's structured lines.
    logging.getLogger("aio_pika").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("aiormq").setLevel(max(numeric, logging.WARNING))
