"""The ``amqpq`` command."""

from __future__ import annotations

import typer

from amqpq.cli import dlq, topology
from amqpq.cli.beat import beat
from amqpq.cli.events import events
from amqpq.cli.inspect import inspect
from amqpq.cli.purge import purge
from amqpq.cli.revoke import revoke
from amqpq.cli.send import send
from amqpq.cli.status import status
from amqpq.cli.worker import worker

app = typer.Typer(
    name="amqpq",
    help="An AMQP-native task queue on RabbitMQ.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(topology.app, name="topology")
app.command("worker")(worker)
app.add_typer(dlq.app, name="dlq")
app.command("status")(status)
app.command("purge")(purge)
app.command("send")(send)
app.command("beat")(beat)
app.command("inspect")(inspect)
app.command("revoke")(revoke)
app.command("events")(events)


def main() -> None:
    app()
