"""``amqpq purge QUEUE``: empty a work queue, after a confirmation."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from amqpq.cli.common import (
    TopologyOption,
    UrlOption,
    console,
    fail,
    handle_errors,
    is_interactive,
    settings_from,
)
from amqpq.errors import ConfigError, ExitCode
from amqpq.settings import Settings
from amqpq.topology.infra import effective_topology
from amqpq.topology.loader import resolve_topology
from amqpq.topology.models import Topology
from amqpq.transport.queues import QueueSession

__all__ = ["YesOption", "confirm_or_refuse", "purge", "quiet_client_logs", "say"]

YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a TTY).")
]


def say(text: str) -> None:
    # markup off: queue names, task names and error messages may contain [brackets].
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def quiet_client_logs() -> None:
    """pika logs connection failures we report ourselves as one line."""
    logging.getLogger("pika").setLevel(logging.CRITICAL)


def confirm_or_refuse(question: str, *, yes: bool) -> None:
    """Go on with ``--yes``; else ask on a TTY; without a TTY refuse (exit 2)."""
    if yes:
        return
    if not is_interactive():
        raise fail(
            "refusing to purge without confirmation: stdin is not a terminal; pass --yes",
            ExitCode.USAGE,
        )
    if not typer.confirm(question, default=False):
        say("nothing purged")
        raise typer.Exit(int(ExitCode.FAILURE))


def load_for(settings: Settings, topology: TopologyOption) -> Topology:
    return resolve_topology(settings.named_topology(topology))[1]


@handle_errors
def purge(
    queue: Annotated[str, typer.Argument(help="A queue of the topology.", show_default=False)],
    yes: YesOption = False,
    topology: TopologyOption = None,
    url: UrlOption = None,
) -> None:
    """Delete every ready message of a queue (unacked ones stay). Asks first unless --yes.

    Dead-letter queues have their own: amqpq dlq purge QUEUE.
    """
    quiet_client_logs()
    settings = settings_from(url, topology)
    parsed = load_for(settings, topology)
    if effective_topology(parsed).queue(queue) is None:
        known = ", ".join(q.name for q in parsed.queues) or "none"
        raise ConfigError(f"queue {queue!r} is not in the topology (its queues: {known})")
    with QueueSession(settings, "purge") as session:
        count = session.count(queue).messages
        if count == 0:
            say(f"{queue!r} is empty: nothing to purge")
            return
        confirm_or_refuse(
            f"Delete {count} message(s) from {queue!r} in vhost {settings.vhost!r}? "
            "This cannot be undone",
            yes=yes,
        )
        purged = session.purge(queue)
    say(f"purged {purged} message(s) from {queue!r}")
