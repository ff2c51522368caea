"""``amqpq topology validate | plan | apply | export | graph``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Declare, check and draw the broker topology from amqpq.yaml.", no_args_is_help=True)
