"""The broker's ``consumer_timeout`` and the tasks whose time limit exceeds it.

RabbitMQ closes a channel whose delivery stays unacked longer than
``consumer_timeout`` (30 minutes by default in 3.10) and requeues the message:
a task allowed to run longer than that is run again on another worker while it
still runs here. The management API does not expose the setting, so the worker
looks, in order, at:

1. ``AMQPQ_CONSUMER_TIMEOUT`` (seconds), for brokers whose configuration the
   worker cannot read;
2. the node's ``rabbitmq.conf`` (path from the management API's ``/api/nodes``),
   when the worker runs on the broker's machine and may read it;
3. otherwise RabbitMQ's default, 30 minutes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Any

from amqpq.errors import AmqpqError
from amqpq.registry import TaskRegistry
from amqpq.settings import Settings

__all__ = [
    "DEFAULT_CONSUMER_TIMEOUT",
    "broker_consumer_timeout",
    "tasks_over",
    "warn_about_long_tasks",
]

log = logging.getLogger("amqpq.worker")

DEFAULT_CONSUMER_TIMEOUT = 1800.0
_SETTING = re.compile(r"^\s*consumer_timeout\s*=\s*(\d+)\s*(?:#.*)?$", re.MULTILINE)


def _from_config_file(path: Path) -> float | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    match = _SETTING.search(text)
    return int(match.group(1)) / 1000 if match else None


def broker_consumer_timeout(settings: Settings, *, timeout: float = 3.0) -> tuple[float, str]:
    """(seconds, where it came from). Blocking: call it off the event loop."""
    env = os.environ.get("AMQPQ_CONSUMER_TIMEOUT")
    if env:
        try:
            return float(env), "AMQPQ_CONSUMER_TIMEOUT"
        except ValueError:
            log.warning("AMQPQ_CONSUMER_TIMEOUT=%r is not a number of seconds; ignored", env)
    try:
        from amqpq.transport.management import ManagementClient

        with ManagementClient.from_settings(settings, timeout=timeout) as api:
            nodes: Any = api.request("GET", "/nodes")
    except AmqpqError as exc:
        log.debug("consumer_timeout: management API not usable: %s", exc)
        nodes = []
    for node in nodes if isinstance(nodes, list) else []:
        for name in node.get("config_files") or []:
            value = _from_config_file(Path(str(name)))
            if value is not None:
                return value, f"{name} on {node.get('name', 'the node')}"
    return DEFAULT_CONSUMER_TIMEOUT, "RabbitMQ's default; not readable from the broker"


def tasks_over(
    registry: TaskRegistry, limit: float, names: list[str] | None = None
) -> list[tuple[str, float]]:
    """Tasks whose longest time limit is over ``limit`` seconds: (name, time limit)."""
    found: list[tuple[str, float]] = []
    for name in names if names is not None else registry.names():
        task = registry.find(name)
        if task is None:
            continue
        limits = [x for x in (task.options.time_limit, task.options.soft_time_limit) if x]
        if limits and max(limits) > limit:
            found.append((name, max(limits)))
    return found


async def warn_about_long_tasks(registry: TaskRegistry, settings: Settings) -> None:
    """Warn about tasks whose time limit exceeds the broker's consumer_timeout."""
    if not tasks_over(registry, 0):
        # No task has a time limit: nothing to compare, so no HTTP client and no
        # management API call at start-up.
        return
    try:
        # Bounded: a management API slow to answer (a busy broker) must not hold back
        # the warning; RabbitMQ's default is the best guess then.
        limit, source = await asyncio.wait_for(
            asyncio.to_thread(broker_consumer_timeout, settings), 10.0
        )
    except TimeoutError:
        limit = DEFAULT_CONSUMER_TIMEOUT
        source = "RabbitMQ's default; the management API did not answer within 10s"
    except Exception:
        log.debug("consumer_timeout check failed", exc_info=True)
        return
    for name, task_limit in tasks_over(registry, limit):
        log.warning(
            "task %s has a time limit of %.0fs, longer than the broker's consumer_timeout "
            "of %.0fs (%s): RabbitMQ would close the channel and requeue the message while "
            "the task still runs; raise consumer_timeout (docs/workers.md) or lower the limit",
            name,
            task_limit,
            limit,
            source,
        )
