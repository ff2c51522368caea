"""The ``amqpq`` command.

``amqpq worker ...`` is parsed without typer when the fast parser is sure of its
arguments (``amqpq.cli.worker_args``): importing typer and click and building
the command line would cost a worker as much start-up time as everything else it
does before consuming. Every other command, ``--help`` and anything the fast
parser does not understand go to the typer app (``amqpq.cli.commands``), which
is imported on first use.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    app: typer.Typer

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from amqpq.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--version"]:
        from amqpq.cli.version import version_line

        print(version_line())
        return
    if argv[:1] == ["worker"]:
        from amqpq.cli import worker_args

        worker_args.main(argv[1:])  # exits, unless typer must parse these arguments
    __getattr__("app")()
