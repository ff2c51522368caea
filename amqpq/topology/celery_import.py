"""``amqpq topology import-celery``: a Celery app's queues, routes and beat schedule as
an ``amqpq.yaml``.

Reads the app's configuration by attribute (``task_queues``, ``task_default_*``,
``task_routes``, ``beat_schedule``): Celery is the user's dependency, never amqpq's,
and nothing here imports it. Every route gets ``protocol: celery``: on the day of the
import Celery workers still serve every task; a queue moves to amqpq workers when its
route loses that line (docs/celery.md). Queues are declared as Celery declares them
(``amqpq_arguments: false``), so both can declare them. What cannot be carried over (a router
function, a regex route, a solar schedule) is listed in the file's comments, never
dropped silently.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml

from amqpq.errors import ConfigError
from amqpq.topology.loader import topology_from_data

__all__ = ["CeleryImport", "import_celery_app", "load_celery_app"]

# kombu's Queue fields that become x- arguments (to_rabbitmq_queue_arguments), with the
# factor from kombu's unit (seconds) to RabbitMQ's (milliseconds).
_QUEUE_FIELDS: dict[str, tuple[str, int]] = {
    "expires": ("x-expires", 1000),
    "message_ttl": ("x-message-ttl", 1000),
    "max_length": ("x-max-length", 1),
    "max_length_bytes": ("x-max-length-bytes", 1),
    "max_priority": ("x-max-priority", 1),
}
_EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")


@dataclass
class CeleryImport:
    """The amqpq.yaml data of a Celery app, and what could not be carried over."""

    data: dict[str, Any]
    skipped: list[str] = field(default_factory=list)
    celery_queues: list[str] = field(default_factory=list)
    """Celery-side ``Queue(...)`` lines that leave the declarations to amqpq."""

    def to_yaml(self, source: str) -> str:
        lines = [
            f"# amqpq.yaml imported from the Celery app {source} (amqpq topology import-celery).",
            "# Every route says protocol: celery: Celery workers still serve these tasks. To move",
            "# a queue to amqpq workers, remove that line from its routes (docs/celery.md).",
            "#",
            "# Every queue says amqpq_arguments: false: amqpq declares it exactly as Celery does.",
            "# RabbitMQ refuses to re-declare a queue with other arguments (PRECONDITION_FAILED),",
            "# and amqpq's work queues otherwise get dead-lettering arguments Celery does not send.",
            "# For a queue that does not exist yet you may instead let amqpq alone declare it:",
            "# remove that line and give the Celery app these queues in task_queues:",
            *(f"#   {line}" for line in self.celery_queues),
        ]
        if self.skipped:
            lines += ["#", "# Not carried over (add them by hand):"]
            lines += [f"#   - {item}" for item in self.skipped]
        body = yaml.safe_dump(self.data, sort_keys=False, default_flow_style=None, width=100)
        return "\n".join(lines) + "\n" + body


def load_celery_app(spec: str, *, cwd: str | None = None) -> Any:
    """Import ``module[:attribute]`` (the current directory first on sys.path) and return
    its Celery app: the named attribute, else ``app`` or ``celery``, else the only one."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or (":" in spec and not attribute):
        raise ConfigError(f"{spec!r}: expected MODULE or MODULE:APP, e.g. proj.celery:app")
    directory = os.path.abspath(cwd or os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    if attribute:
        value: Any = module
        for part in attribute.split("."):
            if not hasattr(value, part):
                raise ConfigError(f"{spec}: module {module_name!r} has no attribute {attribute!r}")
            value = getattr(value, part)
        if not _is_celery_app(value):
            raise ConfigError(
                f"{spec}: {attribute!r} is a {type(value).__name__}, not a Celery app"
            )
        return value
    for name in ("app", "celery"):
        if _is_celery_app(getattr(module, name, None)):
            return getattr(module, name)
    apps = {id(v): v for v in vars(module).values() if _is_celery_app(v)}
    if len(apps) == 1:
        return next(iter(apps.values()))
    if not apps:
        raise ConfigError(f"{spec}: module {module_name!r} defines no Celery app")
    raise ConfigError(
        f"{spec}: module {module_name!r} has several Celery apps; name one: MODULE:APP"
    )


def _is_celery_app(value: object) -> bool:
    return (
        value is not None
        and not isinstance(value, type)
        and all(hasattr(value, name) for name in ("conf", "send_task", "tasks"))
    )


def import_celery_app(celery_app: Any) -> CeleryImport:
    """The amqpq.yaml of a Celery app (validated as amqpq would load it)."""
    conf = celery_app.conf
    result = CeleryImport(data={})
    exchanges: dict[str, dict[str, Any]] = {}
    queues: dict[str, dict[str, Any]] = {}
    # queue name -> (exchange, routing key) a task routed to that queue is published with
    queue_targets: dict[str, tuple[str, str]] = {}

    default_queue = str(conf.get("task_default_queue") or "celery")
    default_exchange = str(conf.get("task_default_exchange") or default_queue)
    default_type = str(conf.get("task_default_exchange_type") or "direct")
    default_key = str(conf.get("task_default_routing_key") or default_queue)

    def add_exchange(name: str, kind: str, durable: bool = True, auto_delete: bool = False) -> None:
        if not name or name in exchanges:
            return
        if kind not in _EXCHANGE_TYPES:
            result.skipped.append(
                f"exchange {name!r} of type {kind!r} (amqpq declares {_EXCHANGE_TYPES})"
            )
            return
        entry: dict[str, Any] = {"name": name, "type": kind}
        if not durable:
            entry["durable"] = False
        if auto_delete:
            entry["auto_delete"] = True
        exchanges[name] = entry

    def add_queue(queue: Any) -> None:
        name = str(queue.name)
        if name in queues:  # named again by a route: the first definition stands
            return
        exchange = getattr(queue, "exchange", None)
        exchange_name = str(getattr(exchange, "name", "") or "")
        routing_key = str(getattr(queue, "routing_key", "") or "")
        arguments = dict(getattr(queue, "queue_arguments", None) or {})
        for attribute, (key, factor) in _QUEUE_FIELDS.items():
            value = getattr(queue, attribute, None)
            if value is not None:
                arguments[key] = int(value * factor)
        entry: dict[str, Any] = {"name": name, "amqpq_arguments": False}
        queue_type = arguments.pop("x-queue-type", None)
        if queue_type and queue_type != "classic":
            entry["type"] = str(queue_type)
        if getattr(queue, "durable", True) is False:
            entry["durable"] = False
        if getattr(queue, "auto_delete", False):
            entry["auto_delete"] = True
        if arguments:
            entry["arguments"] = arguments
        bindings: list[dict[str, Any]] = []
        if exchange_name:
            add_exchange(
                exchange_name,
                str(getattr(exchange, "type", "direct") or "direct"),
                bool(getattr(exchange, "durable", True)),
                bool(getattr(exchange, "auto_delete", False)),
            )
            if exchange_name in exchanges:
                binding: dict[str, Any] = {"exchange": exchange_name}
                if routing_key:
                    binding["routing_key"] = routing_key
                bindings.append(binding)
                queue_targets.setdefault(name, (exchange_name, routing_key))
        for extra in getattr(queue, "bindings", None) or ():
            source = getattr(extra, "exchange", None)
            source_name = str(getattr(source, "name", "") or "")
            if not source_name:
                continue
            add_exchange(source_name, str(getattr(source, "type", "direct") or "direct"))
            binding = {"exchange": source_name}
            key = str(getattr(extra, "routing_key", "") or "")
            if key:
                binding["routing_key"] = key
            if getattr(extra, "arguments", None):
                binding["arguments"] = dict(extra.arguments)
            bindings.append(binding)
            queue_targets.setdefault(name, (source_name, key))
        if bindings:
            entry["bindings"] = bindings
        queues[name] = entry
        exchange_type = str(getattr(exchange, "type", "direct") or "direct")
        result.celery_queues.append(
            _celery_side_queue(name, exchange_name, exchange_type, routing_key)
        )

    # Celery's own view of its queues (``app.amqp.queues``): the default exchange and
    # routing key filled in where a Queue(...) left them out, as Celery declares them.
    processed = getattr(getattr(celery_app, "amqp", None), "queues", None)
    configured = conf.get("task_queues")
    if isinstance(processed, Mapping) and processed:
        for queue in processed.values():
            add_queue(queue)
    elif configured:
        for queue in configured:
            add_queue(queue)
    else:
        add_queue(_DefaultQueue(default_queue, default_exchange, default_type, default_key))

    def target_of_queue(name: str) -> tuple[str, str]:
        found = queue_targets.get(name)
        if found is None:  # Celery creates a missing queue: exchange and key = its name
            add_queue(_DefaultQueue(name, name, default_type, name))
            found = queue_targets[name]
        return found

    routes: dict[str, dict[str, Any]] = {}
    for pattern, route in _route_entries(conf.get("task_routes"), result.skipped):
        queue = route.get("queue")
        queue_name = str(getattr(queue, "name", queue)) if queue is not None else None
        if queue is not None and not isinstance(queue, str):
            add_queue(queue)
        if "exchange" in route and "routing_key" in route:
            exchange_value = route["exchange"]
            exchange_name = str(getattr(exchange_value, "name", exchange_value))
            target = (exchange_name, str(route["routing_key"]))
        elif queue_name is not None:
            target = target_of_queue(queue_name)
        else:
            result.skipped.append(f"route {pattern!r}: {route!r} names no queue or exchange")
            continue
        routes[pattern] = {"exchange": target[0], "routing_key": target[1], "protocol": "celery"}
    if "*" not in routes:
        exchange_name, key = target_of_queue(default_queue)
        routes["*"] = {"exchange": exchange_name, "routing_key": key, "protocol": "celery"}

    timezone = str(conf.get("beat_cron_timezone") or conf.get("timezone") or "UTC")
    schedules = _schedules(conf.get("beat_schedule") or {}, timezone, result.skipped)

    result.data = {"exchanges": list(exchanges.values()), "queues": list(queues.values())}
    result.data["routes"] = routes
    if schedules:
        result.data["schedules"] = schedules
    # Parse it as `amqpq topology validate` would: a file that does not load is a bug here.
    topology_from_data(result.data, source=f"<import of {celery_app!r}>")
    return result


@dataclass(frozen=True)
class _DefaultExchange:
    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False


class _DefaultQueue:
    """A queue Celery makes from its ``task_default_*`` settings (no ``task_queues``)."""

    def __init__(self, name: str, exchange: str, exchange_type: str, routing_key: str) -> None:
        self.name = name
        self.exchange = _DefaultExchange(exchange, exchange_type)
        self.routing_key = routing_key


def _celery_side_queue(name: str, exchange: str, exchange_type: str, routing_key: str) -> str:
    kind = "" if exchange_type == "direct" else f", type={exchange_type!r}"
    return (
        f"Queue({name!r}, Exchange({exchange!r}{kind}), routing_key={routing_key!r}, "
        "no_declare=True)"
    )


def _route_entries(routes: Any, skipped: list[str]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """``task_routes`` as (task name or glob, route) pairs: a dict, or a list of dicts."""
    if routes is None:
        return
    if isinstance(routes, Mapping):
        routes = [routes]
    if not isinstance(routes, list | tuple):
        skipped.append(f"task_routes {routes!r}: a router function is code, not configuration")
        return
    for table in routes:
        if not isinstance(table, Mapping):
            skipped.append(f"task_routes entry {table!r}: a router function is code")
            continue
        for pattern, route in table.items():
            if not isinstance(pattern, str):
                skipped.append(f"route {pattern!r}: a regular expression (amqpq matches globs)")
            elif isinstance(route, str):
                yield pattern, {"queue": route}
            elif isinstance(route, Mapping):
                yield pattern, route
            else:
                skipped.append(f"route {pattern!r}: {route!r} is not a mapping")


def _schedules(beat: Mapping[str, Any], timezone: str, skipped: list[str]) -> dict[str, Any]:
    schedules: dict[str, Any] = {}
    for name, entry in beat.items():
        schedule = entry.get("schedule")
        item: dict[str, Any] = {"task": str(entry["task"])}
        if isinstance(schedule, timedelta):
            item["interval"] = schedule.total_seconds()
        elif isinstance(schedule, int | float) and not isinstance(schedule, bool):
            item["interval"] = float(schedule)
        elif hasattr(schedule, "_orig_minute"):  # celery.schedules.crontab
            fields = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
            item["cron"] = " ".join(str(getattr(schedule, f"_orig_{f}")) for f in fields)
            tz = getattr(schedule, "tz", None)
            item["timezone"] = str(getattr(tz, "key", None) or timezone)
        elif hasattr(getattr(schedule, "run_every", None), "total_seconds"):  # schedule()
            item["interval"] = schedule.run_every.total_seconds()
        else:
            skipped.append(f"schedule {name!r}: {schedule!r} (amqpq has cron and interval)")
            continue
        if entry.get("args"):
            item["args"] = list(entry["args"])
        if entry.get("kwargs"):
            item["kwargs"] = dict(entry["kwargs"])
        schedules[str(name)] = item
    return schedules
