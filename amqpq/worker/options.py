"""What ``amqpq worker`` is asked to do: its options, their defaults, its queues, its App."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from amqpq.errors import ConfigError
from amqpq.registry import TaskRegistry
from amqpq.topology.infra import work_queues
from amqpq.topology.models import Topology

if TYPE_CHECKING:
    from amqpq.results import ResultStore

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "PoolKind",
    "WorkerApp",
    "WorkerOptions",
    "default_concurrency",
    "resolve_queues",
]

PoolKind = Literal["threads", "processes", "async", "solo"]
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024


class WorkerApp(Protocol):
    """What a worker reads of the App: its name and its tasks (``Hooks`` reads its hooks)."""

    main: str | None
    registry: TaskRegistry

    @property
    def result_store(self) -> ResultStore | None:
        """Where the worker stores every task's state (docs/results.md), if anywhere."""
        ...

    @property
    def result_expires(self) -> float: ...


def default_concurrency(pool: PoolKind) -> int:
    """Execution slots when ``-c`` is not given: one per core for processes, one for solo,
    else 8 / 100."""
    if pool == "processes":
        return os.cpu_count() or 1
    if pool == "solo":
        return 1
    if pool == "async":
        return 100
    return 8


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    app_spec: str
    queues: tuple[str, ...] = ()
    pool: PoolKind = "threads"
    concurrency: int | None = None
    grace: float = 30.0
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    declare: bool = True
    cwd: str | None = None
    events: bool = True
    """Publish task and worker events to the stream ``amqpq.events`` (``--without-events``
    turns them off)."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (+ the worker's index under a supervisor)."""
    heartbeat: float = 10.0
    """Seconds between ``worker.heartbeat`` events."""

    @property
    def slots(self) -> int:
        return self.concurrency or default_concurrency(self.pool)


def resolve_queues(topology: Topology, requested: Sequence[str]) -> list[str]:
    """``-Q`` as given (each must be in the topology), else every work queue of the file."""
    if requested:
        unknown = [q for q in requested if topology.queue(q) is None]
        if unknown:
            known = ", ".join(q.name for q in topology.queues) or "none"
            raise ConfigError(f"-Q {','.join(unknown)}: not in the topology (its queues: {known})")
        return list(dict.fromkeys(requested))
    queues = [q.name for q in work_queues(topology)]
    if not queues:
        raise ConfigError("the topology has no work queue to consume (classic or quorum)")
    return queues
