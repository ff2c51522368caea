"""Connection settings, read from arguments first, then ``AMQPQ_*`` environment variables.

``AMQPQ_URL`` holds one broker URL or several separated by commas or spaces
(failover). Each process tries them in an order of its own, shuffled once per
process, so a fleet spreads over a cluster's nodes; ``AMQPQ_FAILOVER_ORDER=given``
keeps the order as written. ``amqps://`` URLs verify the server certificate
against the system CA store unless ``AMQPQ_TLS_CA_FILE`` names another bundle.
The management API address and credentials are derived from the first AMQP URL
unless ``AMQPQ_MANAGEMENT_URL`` says otherwise.
"""

from __future__ import annotations

import os
import random
import socket
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from amqpq.errors import ConfigError, ManagementAPIError

__all__ = ["BrokerAddress", "FailoverOrder", "Settings", "connection_name", "failover_order"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


class BrokerAddress(BaseModel):
    """One parsed AMQP URL."""

    model_config = ConfigDict(frozen=True)

    url: str
    scheme: str
    host: str
    port: int
    username: str
    password: str
    vhost: str

    @property
    def tls(self) -> bool:
        return self.scheme == "amqps"

    @property
    def display(self) -> str:
        """The URL without its password, for logs and error messages."""
        vhost = quote(self.vhost, safe="")
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}/{vhost}"


def hide_password(url: str) -> str:
    """``amqp://user:secret@host/`` as ``amqp://user:***@host/``, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    credentials, at, location = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``amqp[s]://user:pass@host:port/vhost``; the vhost is percent-decoded.

    As in RabbitMQ's URI spec, an empty path means the default vhost ``/`` and
    ``%2F`` spells ``/`` explicitly.
    """
    shown = hide_password(url.strip())
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid broker URL {shown!r}: {exc}") from exc
    if parts.scheme not in ("amqp", "amqps"):
        raise ConfigError(
            f"invalid broker URL {shown!r}: the scheme must be amqp:// or amqps://"
            + (
                " (that looks like the management API's address: set it with AMQPQ_MANAGEMENT_URL)"
                if parts.scheme in ("http", "https")
                else ""
            )
        )
    if not parts.hostname:
        raise ConfigError(f"invalid broker URL {shown!r}: no host")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    return BrokerAddress(
        url=url.strip(),
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or (5671 if parts.scheme == "amqps" else 5672),
        username=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        vhost=vhost,
    )


def connection_name(role: str) -> str:
    """The name every amqpq connection shows in the management UI: ``amqpq <role> <host>:<pid>``."""
    return f"amqpq {role} {socket.gethostname()}:{os.getpid()}"


ENV_PREFIX = "AMQPQ_"

FailoverOrder = Literal["shuffle", "given"]


def failover_order(
    addresses: list[BrokerAddress], order: FailoverOrder, pid: int | None = None
) -> list[BrokerAddress]:
    """The addresses in the order process ``pid`` (this one by default) tries them.

    ``shuffle``: a permutation of its own per host and process id, the same on every
    call, so the processes of a fleet spread over a cluster's nodes instead of all
    sitting on the first URL (and a forked worker does not inherit its parent's
    order). ``given``: as written.
    """
    if order == "given" or len(addresses) < 2:
        return list(addresses)
    shuffled = list(addresses)
    seed = f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"
    random.Random(seed).shuffle(shuffled)
    return shuffled


class Settings(BaseModel):
    """Everything amqpq needs to reach the broker. Pass explicitly; there is no global.

    Fields not given as arguments come from ``AMQPQ_<FIELD>`` environment variables
    (any case), then from the defaults. A plain model reading ``os.environ`` itself:
    pydantic-settings made every worker import much more for the same thing.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)

    url: str = Field(default=DEFAULT_URL, description="one or more AMQP URLs, comma separated")
    management_url: str | None = Field(
        default=None, description="management API base URL; derived from the AMQP URL if unset"
    )
    management_user: str | None = None
    management_password: str | None = None
    topology: Path | None = Field(default=None, description="topology file (else ./amqpq.yaml)")
    failover_order: FailoverOrder = Field(
        default="shuffle",
        description="order in which each process tries the URLs: shuffle (per process) or given",
    )
    heartbeat: int = Field(default=30, ge=0, description="AMQP heartbeat in seconds (0 = off)")
    connect_timeout: float = Field(default=10.0, gt=0)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_verify: bool = True
    result_backend: str | None = Field(
        default=None, description="result store URL: redis://... or postgresql://... (none: off)"
    )
    result_expires: float = Field(
        default=86_400.0, gt=0, description="seconds a stored result is kept (default 1 day)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        prefix = ENV_PREFIX.lower()
        values = dict(data)
        for key, value in os.environ.items():
            lowered = key.lower()
            if lowered.startswith(prefix):
                name = lowered[len(prefix) :]
                if name in cls.model_fields and name not in values:
                    values[name] = value
        return values

    @field_validator("url")
    @classmethod
    def _urls_parse(cls, value: str) -> str:
        if not _split_urls(value):
            raise ValueError("no broker URL given")
        for url in _split_urls(value):
            parse_broker_url(url)
        return value

    @cached_property
    def addresses(self) -> list[BrokerAddress]:
        """The broker URLs as written (the first one names the vhost and the management API)."""
        return [parse_broker_url(url) for url in _split_urls(self.url)]

    def connect_order(self) -> list[BrokerAddress]:
        """The broker URLs in the order this process tries them (:func:`failover_order`)."""
        return failover_order(self.addresses, self.failover_order)

    @property
    def primary(self) -> BrokerAddress:
        return self.addresses[0]

    @property
    def vhost(self) -> str:
        return self.primary.vhost

    @property
    def management_base_url(self) -> str:
        """Base URL of the management HTTP API, without a trailing slash.

        ``AMQPQ_MANAGEMENT_URL`` when set; otherwise derived from the first AMQP URL
        only when that uses the standard port (5672 -> 15672, 5671 -> 15671). A broker
        on another port says nothing about where its management API listens, and a
        guess could silently read another broker on the same host.
        """
        if self.management_url:
            return self.management_url.rstrip("/")
        address = self.primary
        standard = 5671 if address.tls else 5672
        if address.port != standard:
            raise ManagementAPIError(
                f"cannot tell where the management API of {address.display} listens (it is "
                f"derived only from the standard AMQP port {standard}): set "
                "AMQPQ_MANAGEMENT_URL, e.g. http://host:15672"
            )
        scheme = "https" if address.tls else "http"
        return f"{scheme}://{address.host}:{standard + 10000}"

    @property
    def management_credentials(self) -> tuple[str, str]:
        address = self.primary
        return (
            self.management_user or address.username,
            self.management_password or address.password,
        )

    def topology_path(self, override: Path | None = None) -> Path:
        """``-f`` first, then ``AMQPQ_TOPOLOGY``, then ``./amqpq.yaml``."""
        return self.named_topology(override) or Path("amqpq.yaml")

    def named_topology(self, override: Path | None = None) -> Path | None:
        """The file the user named (``-f`` or ``AMQPQ_TOPOLOGY``), if any."""
        return override or self.topology


def _split_urls(value: str) -> list[str]:
    return [part for part in value.replace(",", " ").split() if part]


def load_settings(url: str | None = None, topology: Path | None = None) -> Settings:
    """Settings from the environment, overridden by explicit (CLI) values."""
    overrides: dict[str, object] = {}
    if url:
        overrides["url"] = url
    if topology:
        overrides["topology"] = topology
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_settings_problem(exc, given=set(overrides))) from None


_OPTIONS = {"url": "--url", "topology": "-f/--topology"}


def _settings_problem(exc: ValidationError, *, given: set[str]) -> str:
    """The first problem, named as the user set it (a CLI option or an AMQPQ_* variable)."""
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    source = _OPTIONS[field] if field in given else f"{ENV_PREFIX}{field.upper()}"
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        return str(cause)  # already names the value, with any password hidden
    shown = error.get("input")
    value = "" if shown is None or field == "url" else f" (got {shown!r:.60})"
    return f"invalid {source}: {error['msg']}{value}"
