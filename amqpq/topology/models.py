"""The schema of ``amqpq.yaml``: frozen pydantic models, one per kind of broker object.

Bindings are written on their *destination*: a queue lists the exchanges it is
bound to, and an exchange lists the exchanges it receives from (exchange-to-
exchange bindings). :meth:`Topology.bindings` flattens both into
:class:`Binding` records, which is what the broker knows.
"""

from __future__ import annotations

import fnmatch
import json
import zoneinfo
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from amqpq.errors import ConfigError

__all__ = [
    "FRIENDLY_QUEUE_ARGUMENTS",
    "Binding",
    "Exchange",
    "ExchangeBinding",
    "ExchangeType",
    "HeaderValue",
    "Infrastructure",
    "Queue",
    "QueueBinding",
    "QueueType",
    "Route",
    "Schedule",
    "Topology",
]

ExchangeType = Literal["direct", "topic", "fanout", "headers"]
QueueType = Literal["classic", "quorum", "stream"]
# Values a route may put in message headers. Headers exchanges compare values *and*
# kinds ("1" is not 1, true is not 1), so the YAML type is kept as written.
HeaderValue = str | int | float | bool

# Typed queue fields and the x- argument each one stands for.
FRIENDLY_QUEUE_ARGUMENTS: dict[str, str] = {
    "max_length": "x-max-length",
    "max_length_bytes": "x-max-length-bytes",
    "message_ttl": "x-message-ttl",
    "expires": "x-expires",
    "max_priority": "x-max-priority",
    "delivery_limit": "x-delivery-limit",
    "single_active_consumer": "x-single-active-consumer",
    "overflow": "x-overflow",
    "dead_letter_exchange": "x-dead-letter-exchange",
    "dead_letter_routing_key": "x-dead-letter-routing-key",
    "max_age": "x-max-age",
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _reject_managed_flag_from_file(value: bool, info: ValidationInfo) -> bool:
    # The flag marks objects amqpq adds itself (infra.py); a file cannot claim it.
    if value and isinstance(info.context, dict) and info.context.get("from_file"):
        raise ValueError("is set by amqpq on the objects it adds, not in the file")
    return value


class ExchangeBinding(_Model):
    """An exchange-to-exchange binding: messages flow from ``exchange`` into the owner."""

    exchange: str = Field(min_length=1, description="the source exchange")
    routing_key: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)


class QueueBinding(_Model):
    """A binding from ``exchange`` to the queue that lists it.

    For headers exchanges, ``arguments`` holds ``x-match`` (all | any | all-with-x |
    any-with-x, default all) and the header values to match.
    """

    exchange: str = Field(min_length=1)
    routing_key: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)


class Exchange(_Model):
    name: str = Field(min_length=1)
    type: ExchangeType = "direct"
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    alternate_exchange: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    bindings: tuple[ExchangeBinding, ...] = ()
    managed_by_amqpq: bool = False

    @field_validator("managed_by_amqpq")
    @classmethod
    def _not_from_file(cls, value: bool, info: ValidationInfo) -> bool:
        return _reject_managed_flag_from_file(value, info)

    @model_validator(mode="after")
    def _alternate_exchange_once(self) -> Exchange:
        given = self.arguments.get("alternate-exchange")
        if self.alternate_exchange is not None and given not in (None, self.alternate_exchange):
            raise ValueError(
                "alternate_exchange and arguments.alternate-exchange disagree; set only one"
            )
        return self

    @property
    def declare_arguments(self) -> dict[str, Any]:
        """The arguments sent in exchange.declare (``alternate_exchange`` folded in)."""
        arguments = dict(self.arguments)
        if self.alternate_exchange is not None:
            arguments["alternate-exchange"] = self.alternate_exchange
        return arguments

    @property
    def alternate(self) -> str | None:
        value = self.declare_arguments.get("alternate-exchange")
        return value if isinstance(value, str) and value else None


class Queue(_Model):
    name: str = Field(min_length=1)
    type: QueueType = "classic"
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    arguments: dict[str, Any] = Field(default_factory=dict)
    bindings: tuple[QueueBinding, ...] = ()
    # Typed shortcuts for the common x- arguments (FRIENDLY_QUEUE_ARGUMENTS).
    max_length: int | None = Field(default=None, ge=0)
    max_length_bytes: int | None = Field(default=None, ge=0)
    message_ttl: int | None = Field(default=None, ge=0, description="milliseconds")
    expires: int | None = Field(default=None, ge=1, description="milliseconds")
    max_priority: int | None = Field(default=None, ge=1, le=255)
    delivery_limit: int | None = Field(default=None, ge=0)
    single_active_consumer: bool | None = None
    overflow: Literal["drop-head", "reject-publish", "reject-publish-dlx"] | None = None
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_age: str | None = Field(default=None, pattern=r"^[0-9]+(Y|M|D|h|m|s)$")
    amqpq_arguments: bool = Field(
        default=True,
        description="false: declare the queue with the file's arguments only, none of amqpq's "
        "own (dead-lettering, delivery limit), so that it matches a queue Celery declares; "
        "amqpq workers still dead-letter its messages to <queue>.dlq themselves",
    )
    managed_by_amqpq: bool = False

    @field_validator("managed_by_amqpq")
    @classmethod
    def _not_from_file(cls, value: bool, info: ValidationInfo) -> bool:
        return _reject_managed_flag_from_file(value, info)

    @model_validator(mode="after")
    def _friendly_fields_agree_with_arguments(self) -> Queue:
        for field, key in FRIENDLY_QUEUE_ARGUMENTS.items():
            value = getattr(self, field)
            if value is not None and key in self.arguments and self.arguments[key] != value:
                raise ValueError(f"{field} and arguments.{key} disagree; set only one")
        if "x-queue-type" in self.arguments and self.arguments["x-queue-type"] != self.type:
            raise ValueError(
                "arguments.x-queue-type disagrees with type; write the queue type as `type:`"
            )
        return self

    @property
    def declare_arguments(self) -> dict[str, Any]:
        """The x- arguments sent in queue.declare, typed fields folded in, and the type.

        ``x-queue-type`` is always sent, ``classic`` too: a vhost may default to
        quorum (RabbitMQ 4.x deployments, Amazon MQ, ``rabbitmqctl add_vhost
        --default-queue-type quorum``), where a queue declared without a type becomes
        quorum. RabbitMQ treats an explicit ``classic`` as equivalent to a classic
        queue declared without one, so queues declared by older clients still match.
        Exports (definitions) and the memory broker read the same dict.
        """
        arguments = {k: v for k, v in self.arguments.items() if k != "x-queue-type"}
        for field, key in FRIENDLY_QUEUE_ARGUMENTS.items():
            value = getattr(self, field)
            if value is not None:
                arguments[key] = value
        arguments["x-queue-type"] = self.type
        return arguments

    def argument_location(self, key: str) -> tuple[str, ...]:
        """Where an x- argument was written (for error lines): the typed field or ``arguments``."""
        for field, argument in FRIENDLY_QUEUE_ARGUMENTS.items():
            if argument == key and getattr(self, field) is not None:
                return (field,)
        return ("arguments", key)


class Route(_Model):
    """Where messages of a task go: an exchange, a routing key and optional headers."""

    exchange: str = Field(
        min_length=1,
        description="the exchange to publish to (the default exchange is not supported)",
    )
    routing_key: str = ""
    headers: dict[str, HeaderValue] = Field(default_factory=dict)
    protocol: Literal["amqpq", "celery"] = Field(
        default="amqpq",
        description="the message format: amqpq's envelope, or Celery's protocol 2 for tasks "
        "still served by Celery workers (docs/celery.md)",
    )


class Schedule(_Model):
    """A periodic task: a cron expression or an interval in seconds, in a time zone."""

    task: str = Field(min_length=1)
    cron: str | None = None
    interval: float | None = Field(default=None, gt=0, description="seconds")
    timezone: str = "UTC"
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from croniter import croniter  # only files with schedules pay for it

        if not croniter.is_valid(value):
            raise ValueError(
                f"expected a cron expression like '0 9 * * *' (minute hour day month weekday), "
                f"got {value!r}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_exists(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"expected an IANA time zone such as 'UTC' or 'Europe/Berlin', got {value!r}"
            ) from exc
        return value

    @model_validator(mode="after")
    def _cron_or_interval(self) -> Schedule:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("expected exactly one of cron or interval")
        return self

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class Infrastructure(_Model):
    """What amqpq adds to the broker besides the file's objects (docs/architecture.md)."""

    prefix: str = Field(default="amqpq", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    dead_letters: bool = True
    delivery_limit: int | None = Field(default=20, ge=1)
    delay: bool = True
    # The delay levels' queue type: quorum survives the loss of a cluster node (a classic
    # queue lives on one node, and countdown sends routed to it fail while it is down);
    # classic keeps delay levels an older amqpq declared (docs/delays.md, "Queue type").
    delay_queue_type: Literal["quorum", "classic"] = "quorum"
    # Control and events exchanges and the revocations stream (docs/operations.md).
    operations: bool = True
    # The events stream's retention (docs/dashboard.md): the dashboard's history window.
    events_max_age: str = Field(default="7D", pattern=r"^[0-9]+(Y|M|D|h|m|s)$")
    events_max_bytes: int = Field(default=2_000_000_000, ge=1_000_000)


class Binding(BaseModel):
    """One binding as the broker sees it: source exchange -> destination queue or exchange."""

    model_config = ConfigDict(frozen=True)

    source: str
    destination: str
    destination_type: Literal["queue", "exchange"]
    routing_key: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    managed_by_amqpq: bool = False

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """A hashable identity; RabbitMQ tells bindings apart by all five parts."""
        return (
            self.source,
            self.destination_type,
            self.destination,
            self.routing_key,
            json.dumps(self.arguments, sort_keys=True, default=str),
        )


class Topology(_Model):
    """Everything ``amqpq.yaml`` declares."""

    exchanges: tuple[Exchange, ...] = ()
    queues: tuple[Queue, ...] = ()
    routes: dict[str, Route] = Field(default_factory=dict)
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    infrastructure: Infrastructure = Field(default_factory=Infrastructure)

    def exchange(self, name: str) -> Exchange | None:
        return next((x for x in self.exchanges if x.name == name), None)

    def queue(self, name: str) -> Queue | None:
        return next((q for q in self.queues if q.name == name), None)

    def bindings(self) -> list[Binding]:
        """Every binding, exchange-to-exchange first (the order they must be declared in)."""
        managed_exchanges = {x.name for x in self.exchanges if x.managed_by_amqpq}
        result = [
            Binding(
                source=b.exchange,
                destination=x.name,
                destination_type="exchange",
                routing_key=b.routing_key,
                arguments=dict(b.arguments),
                managed_by_amqpq=x.managed_by_amqpq or b.exchange in managed_exchanges,
            )
            for x in self.exchanges
            for b in x.bindings
        ]
        result.extend(
            Binding(
                source=b.exchange,
                destination=q.name,
                destination_type="queue",
                routing_key=b.routing_key,
                arguments=dict(b.arguments),
                managed_by_amqpq=q.managed_by_amqpq or b.exchange in managed_exchanges,
            )
            for q in self.queues
            for b in q.bindings
        )
        return result

    def route_pattern_for(self, task_name: str) -> str | None:
        """The ``routes:`` key that applies: the exact name, else the first glob, else ``*``."""
        if task_name in self.routes:
            return task_name
        for pattern in self.routes:
            if pattern != "*" and fnmatch.fnmatchcase(task_name, pattern):
                return pattern
        return "*" if "*" in self.routes else None

    def route_for(self, task_name: str) -> Route:
        """The route of a task; :class:`ConfigError` when no entry of ``routes:`` matches."""
        pattern = self.route_pattern_for(task_name)
        if pattern is None:
            raise ConfigError(
                f"no route for task {task_name!r}: add it (or a glob matching it, or a "
                'default "*") under routes: in the topology file'
            )
        return self.routes[pattern]
