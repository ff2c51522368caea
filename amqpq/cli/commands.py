"""The typer app of the ``amqpq`` command.

Command groups are imported when they run (or when ``--help`` lists them): a
worker must not pay for pika, httpx, rich tables or the topology tooling it
never uses, in start-up time or in memory.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["app"]

# name -> (module, attribute: a Typer sub-app or a command function), in the order of --help.
_COMMANDS: dict[str, tuple[str, str]] = {
    "worker": ("amqpq.cli.worker", "worker"),
    "status": ("amqpq.cli.status", "status"),
    "purge": ("amqpq.cli.purge", "purge"),
    "send": ("amqpq.cli.send", "send"),
    "beat": ("amqpq.cli.beat", "beat"),
    "inspect": ("amqpq.cli.inspect", "inspect"),
    "revoke": ("amqpq.cli.revoke", "revoke"),
    "result": ("amqpq.cli.result", "result"),
    "events": ("amqpq.cli.events", "events"),
    "dashboard": ("amqpq.cli.dashboard", "dashboard"),
    "topology": ("amqpq.cli.topology", "app"),
    "dlq": ("amqpq.cli.dlq", "app"),
}


def _load(name: str) -> Any:
    """The click command of ``name`` (a group for a sub-app), as typer builds it."""
    module, attribute = _COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        command: Any = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class _LazyGroup(TyperGroup):
    """Imports a command's module the first time the command is looked up."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*_COMMANDS, *(name for name in self.commands if name not in _COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in _COMMANDS:
            command = self.commands[cmd_name] = _load(cmd_name)
        return command


app = typer.Typer(
    name="amqpq",
    cls=_LazyGroup,
    help="An AMQP-native task queue on RabbitMQ.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from amqpq.cli.version import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print amqpq's version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    # A callback makes typer build a group even though no command is registered up front.
    pass
