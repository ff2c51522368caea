"""``amqpq dashboard``: the web dashboard (pages, JSON API, live updates) on one port."""

from __future__ import annotations

import contextlib
import os
import re
from typing import Annotated

import typer

from amqpq.cli.common import TopologyOption, UrlOption, console, handle_errors, settings_from
from amqpq.cli.purge import load_for
from amqpq.errors import AmqpqError, ConfigError
from amqpq.settings import hide_password

__all__ = ["dashboard", "parse_auth", "retention_seconds"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_DEFAULT_DB = "amqpq-dashboard.db"
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "D": 86400, "M": 30 * 86400, "Y": 365 * 86400}


def parse_auth(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` (the password may hold colons)."""
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise ConfigError("--auth: expected USER:PASSWORD")
    return user, password


def retention_seconds(max_age: str) -> float:
    """The stream's ``x-max-age`` (``7D``, ``24h``) in seconds: how long the index keeps."""
    match = re.fullmatch(r"([0-9]+)(Y|M|D|h|m|s)", max_age)
    if match is None:
        raise ConfigError(f"infrastructure.events_max_age {max_age!r}: expected e.g. 7D or 24h")
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


@handle_errors
def dashboard(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port")] = 5555,
    address: Annotated[
        str, typer.Option("--address", help="Address to listen on (not loopback: needs --auth)")
    ] = "127.0.0.1",
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            help="USER:PASSWORD for HTTP basic auth on pages and API [env: AMQPQ_DASHBOARD_AUTH]",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Also accept 'Authorization: Bearer TOKEN' on the API (with --auth) "
            "[env: AMQPQ_DASHBOARD_TOKEN]",
            show_default=False,
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Refuse every change (403): revoke, retry, replay")
    ] = False,
    db: Annotated[
        str,
        typer.Option(
            "--db",
            help="The history index: an SQLite file, or postgresql://user@host:port/db"
            "[?table_prefix=...] shared by several dashboards [env: AMQPQ_DASHBOARD_DB]",
        ),
    ] = _DEFAULT_DB,
    topology: TopologyOption = None,
    url: UrlOption = None,
) -> None:
    """Serve the web dashboard: tasks, workers, queues, dead letters and schedules.

    Its history is indexed from the events stream (amqpq.events) into an SQLite file
    (or a PostgreSQL database several dashboards share), kept across restarts within
    the stream's retention.
    """
    auth = auth or os.environ.get("AMQPQ_DASHBOARD_AUTH") or None
    token = token or os.environ.get("AMQPQ_DASHBOARD_TOKEN") or None
    if os.environ.get("AMQPQ_DASHBOARD_DB") and db == _DEFAULT_DB:
        db = os.environ["AMQPQ_DASHBOARD_DB"]
    credentials = parse_auth(auth) if auth else None
    if token and credentials is None:
        raise ConfigError("--token needs --auth (the pages still ask for the password)")
    if credentials is None and address not in _LOOPBACK:
        raise ConfigError(
            f"--address {address}: without --auth the dashboard listens on 127.0.0.1 only"
        )
    try:
        import uvicorn

        from amqpq.dashboard.web import DashboardConfig, create_app
    except ImportError as exc:
        raise ConfigError(
            f"the dashboard needs its extra: pip install 'amqpq[dashboard]' ({exc.name} missing)"
        ) from None
    settings = settings_from(url, topology)
    topo = load_for(settings, topology)
    config = DashboardConfig(
        settings=settings,
        topology=topo,
        history=db,
        auth=credentials,
        token=token,
        read_only=read_only,
        retention=retention_seconds(topo.infrastructure.events_max_age),
    )
    app = create_app(config)
    where = f"http://{'[' + address + ']' if ':' in address else address}:{port}/"
    notes = [f"history {hide_password(db)}"]
    if read_only:
        notes.append("read-only")
    if credentials is None:
        notes.append("no --auth: listening on 127.0.0.1 only")
    console.print(f"amqpq dashboard on {where} ({'; '.join(notes)})", highlight=False)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=address,
            port=port,
            log_level="critical",  # its errors come back here, said in one line
            access_log=False,
            # Live pages keep a server-sent events stream open: do not wait for them.
            timeout_graceful_shutdown=2,
        )
    )
    with contextlib.suppress(SystemExit):  # uvicorn's exit when start-up fails: why below
        server.run()
    failure = config.extra.get("startup_error")
    if isinstance(failure, AmqpqError):
        raise failure
    if not server.started:
        raise ConfigError(
            f"the dashboard could not listen on {address}:{port} (in use, or not an address "
            "of this machine)"
        )
