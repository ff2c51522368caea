"""``amqpq dlq list | show | replay | purge``: the dead-letter queues of the work queues."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from amqpq import dlq as deadletters
from amqpq.cli.common import (
    TopologyOption,
    UrlOption,
    console,
    err_console,
    fail,
    handle_errors,
    settings_from,
)
from amqpq.cli.purge import YesOption, confirm_or_refuse, load_for, quiet_client_logs, say
from amqpq.cli.tables import folding_table
from amqpq.codec import OutgoingMessage
from amqpq.errors import ExitCode, UnroutableError
from amqpq.transport.queues import QueueNotFoundError, QueueSession

__all__ = ["app"]

app = typer.Typer(
    help="Dead letters: list the dead-letter queues, show why messages died, replay, purge.",
    no_args_is_help=True,
)

QueueArgument = Annotated[
    str,
    typer.Argument(
        help="The work queue (or its dead-letter queue, QUEUE.dlq).", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _missing(dlq: deadletters.DeadLetterQueue, vhost: str) -> QueueNotFoundError:
    return QueueNotFoundError(
        f"dead-letter queue {dlq.name!r} does not exist in vhost {vhost!r} "
        "(amqpq topology apply declares it)"
    )


@app.command("list")
@handle_errors
def list_(
    as_json: JsonOption = False, topology: TopologyOption = None, url: UrlOption = None
) -> None:
    """Every work queue's dead-letter queue with its message count (exact, over AMQP)."""
    quiet_client_logs()
    settings = settings_from(url, topology)
    queues = deadletters.dead_letter_queues(load_for(settings, topology))
    rows: list[dict[str, Any]] = []
    with QueueSession(settings, "dlq") as session:
        for dlq in queues:
            try:
                count: int | None = session.count(dlq.name).messages
            except QueueNotFoundError:
                count = None
            rows.append(
                {
                    "queue": dlq.work_queue,
                    "dead_letter_queue": dlq.name,
                    "type": dlq.type,
                    "messages": count,
                    "exists": count is not None,
                }
            )
    if as_json:
        typer.echo(json.dumps({"vhost": settings.vhost, "queues": rows}, indent=2))
        return
    if not rows:
        say("the topology has no work queue with an amqpq dead-letter queue")
        return
    table = folding_table(
        f"dead-letter queues in vhost {settings.vhost!r}",
        ["work queue", "dead-letter queue", "type", "messages"],
        right=["messages"],
    )
    for row in rows:
        messages = row["messages"]
        shown = "[yellow]missing[/]" if messages is None else str(messages)
        style = "bold red" if messages else None
        table.add_row(row["queue"], row["dead_letter_queue"], row["type"], shown, style=style)
    console.print(table)
    total = sum(row["messages"] or 0 for row in rows)
    say(f"{total} dead letter(s) in {sum(1 for r in rows if r['messages'])} of {len(rows)} queues")
    if any(row["messages"] is None for row in rows):
        say("missing: not declared yet (amqpq topology apply)")


def _print_letter(index: int, letter: deadletters.DeadLetter) -> None:
    reason = letter.reason or "unknown reason"
    error = ""
    if letter.error_type and letter.error_message:
        error = f"  {letter.error_type}: {letter.error_message}"
    elif letter.error_type:
        error = f"  {letter.error_type}"
    say(f"#{index}  {reason}{error}")
    retries = "-" if letter.retries is None else str(letter.retries)
    say(f"    task      {letter.task or '-'}   id {letter.task_id or '-'}   retries {retries}")
    exchange = "-" if letter.exchange is None else repr(letter.exchange)
    routing_key = "-" if letter.routing_key is None else repr(letter.routing_key)
    say(f"    from      queue {letter.queue or '-'}   exchange {exchange}   key {routing_key}")
    when = letter.died_at.isoformat(timespec="seconds") if letter.died_at else "-"
    died = f"{when}   by {letter.source}"
    if letter.source == "broker" and letter.deaths > 1:
        died += f" ({letter.deaths} times)"
    say(f"    dead at   {died}")


@app.command()
@handle_errors
def show(
    queue: QueueArgument,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N letters.")] = 20,
    as_json: JsonOption = False,
    topology: TopologyOption = None,
    url: UrlOption = None,
) -> None:
    """The dead letters of a work queue and why they died. Does not consume them.

    They are read with basic.get and given back by closing the channel, so they
    stay in the queue in their order.
    """
    quiet_client_logs()
    settings = settings_from(url, topology)
    dlq = deadletters.resolve(load_for(settings, topology), queue)
    with QueueSession(settings, "dlq") as session:
        try:
            total = session.count(dlq.name).messages
        except QueueNotFoundError:
            raise _missing(dlq, settings.vhost) from None
        letters = deadletters.peek(session, dlq, limit) if total else []
    if as_json:
        document = {
            "queue": dlq.work_queue,
            "dead_letter_queue": dlq.name,
            "messages": total,
            "letters": [letter.as_json() for letter in letters],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    if not letters:
        say(f"{dlq.name}: no dead letters")
        return
    shown = f", showing the first {len(letters)}" if len(letters) < total else ""
    say(f"{dlq.name}: {total} dead letter(s){shown} (not consumed)")
    for index, letter in enumerate(letters, 1):
        say("")
        _print_letter(index, letter)


@app.command()
@handle_errors
def replay(
    queue: QueueArgument,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Replay at most N letters.")
    ] = None,
    task: Annotated[str | None, typer.Option("--task", help="Only letters of this task.")] = None,
    task_id: Annotated[
        str | None, typer.Option("--id", help="Only the letter of this task id.")
    ] = None,
    to_queue: Annotated[
        bool,
        typer.Option(
            "--to-queue",
            help="Publish straight to the original queue instead of its original exchange "
            "(a fanout or topic exchange would also copy it to the other queues it reaches).",
        ),
    ] = False,
    topology: TopologyOption = None,
    url: UrlOption = None,
) -> None:
    """Send dead letters back to their original route with retries reset to 0.

    One at a time: publish (confirmed, mandatory), then ack the dead letter. An
    interruption loses nothing; a crash between the two leaves a duplicate.
    A letter whose route reaches no queue stays in the dead-letter queue (exit 6).
    """
    quiet_client_logs()
    settings = settings_from(url, topology)
    parsed = load_for(settings, topology)
    dlq = deadletters.resolve(parsed, queue)

    def replayed(letter: deadletters.DeadLetter, outgoing: OutgoingMessage) -> None:
        target = (
            f"queue {outgoing.routing_key!r}"
            if outgoing.exchange == ""
            else f"exchange {outgoing.exchange!r} key {outgoing.routing_key!r}"
        )
        say(f"replayed {letter.task_id or '-'} ({letter.task or '?'}) -> {target}")

    def failed(failure: deadletters.ReplayFailure) -> None:
        err_console.print(
            f"error: {failure.letter.task_id or '-'} ({failure.letter.task or '?'}): "
            f"{failure.error}; left in {dlq.name}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    with QueueSession(settings, "dlq") as session:
        if not session.exists(dlq.name):
            raise _missing(dlq, settings.vhost)
        result = deadletters.replay(
            session,
            dlq,
            prefix=parsed.infrastructure.prefix,
            limit=limit,
            task=task,
            task_id=task_id,
            to_queue=to_queue,
            on_replayed=replayed,
            on_failed=failed,
        )
    parts = [f"replayed {result.replayed} dead letter(s) from {dlq.name}"]
    if result.skipped:
        parts.append(f"{result.skipped} not matching left in place")
    if result.failures:
        parts.append(f"{len(result.failures)} could not be replayed and stayed")
    say("; ".join(parts))
    if result.failures:
        unroutable = all(isinstance(f.error, UnroutableError) for f in result.failures)
        raise typer.Exit(int(ExitCode.UNROUTABLE if unroutable else ExitCode.BROKER))
    if (task is not None or task_id is not None) and result.replayed == 0:
        raise fail(f"no dead letter in {dlq.name} matched the --task/--id given")


@app.command("purge")
@handle_errors
def purge_(
    queue: QueueArgument,
    yes: YesOption = False,
    topology: TopologyOption = None,
    url: UrlOption = None,
) -> None:
    """Delete every dead letter of a work queue. Asks first unless --yes."""
    quiet_client_logs()
    settings = settings_from(url, topology)
    dlq = deadletters.resolve(load_for(settings, topology), queue)
    with QueueSession(settings, "dlq") as session:
        try:
            count = session.count(dlq.name).messages
        except QueueNotFoundError:
            raise _missing(dlq, settings.vhost) from None
        if count == 0:
            say(f"{dlq.name}: no dead letters to purge")
            return
        confirm_or_refuse(
            f"Delete {count} dead letter(s) from {dlq.name!r} in vhost {settings.vhost!r}? "
            "This cannot be undone",
            yes=yes,
        )
        purged = deadletters.purge(session, dlq)
    say(f"purged {purged} dead letter(s) from {dlq.name}")
