"""Prometheus metrics of a worker process (``amqpq worker --metrics-port PORT``).

Each worker process serves its own ``/metrics`` on its own port: with
``--workers N`` the supervisor's children use PORT, PORT+1, ..., PORT+N-1
(child index i keeps its port when it is replaced), so every process is one
scrape target and no shared files are involved. Every series carries a
``worker`` label (``host:pid``). :func:`check_metrics_ports` checks the whole
range once, before the children are forked.

| metric | type | labels |
| --- | --- | --- |
| ``amqpq_tasks_total`` | counter | ``task``, ``state`` (succeeded, failed, retried, rejected, revoked) |
| ``amqpq_task_runtime_seconds`` | histogram | ``task`` |
| ``amqpq_tasks_in_flight`` | gauge | |
| ``amqpq_prefetch`` | gauge | ``queue`` |
| ``amqpq_messages_received_total`` | counter | |
| ``amqpq_reconnects_total`` | counter | |
| ``amqpq_dead_lettered_total`` | counter | ``reason`` |
| ``amqpq_events_dropped_total`` | counter | |
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from amqpq.errors import ConfigError

__all__ = [
    "RUNTIME_BUCKETS",
    "WorkerMetrics",
    "check_metrics_ports",
    "metrics_port_for",
    "metrics_ports",
]

log = logging.getLogger("amqpq.metrics")

RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_MAX_PORT = 65535
_FINAL = frozenset({"succeeded", "failed", "retried", "rejected", "revoked"})


class _WorkerCollector(Collector):
    """Values read from the worker at scrape time (nothing to update on the hot path)."""

    def __init__(self, worker: str, read: Callable[[], Mapping[str, Any]]) -> None:
        self._worker = worker
        self._read = read

    def collect(self) -> Iterator[Any]:
        values = self._read()
        labels = ["worker"]
        in_flight = GaugeMetricFamily("amqpq_tasks_in_flight", "Tasks running now", labels=labels)
        in_flight.add_metric([self._worker], float(values.get("active", 0)))
        yield in_flight
        prefetch = GaugeMetricFamily(
            "amqpq_prefetch", "Prefetch of the consumer of each queue", labels=["worker", "queue"]
        )
        for queue, count in dict(values.get("prefetch", {})).items():
            prefetch.add_metric([self._worker, queue], float(count))
        yield prefetch
        for name, key, help_text in (
            ("amqpq_messages_received", "received", "Messages delivered to this worker"),
            ("amqpq_reconnects", "reconnects", "Reconnections to RabbitMQ"),
            ("amqpq_events_dropped", "events_dropped", "Events dropped (queue full or no link)"),
        ):
            counter = CounterMetricFamily(name, help_text, labels=labels)
            counter.add_metric([self._worker], float(values.get(key, 0)))
            yield counter
        dead = CounterMetricFamily(
            "amqpq_dead_lettered", "Messages dead-lettered, by reason", labels=["worker", "reason"]
        )
        for reason, count in dict(values.get("dead_lettered", {})).items():
            dead.add_metric([self._worker, reason], float(count))
        yield dead


class WorkerMetrics:
    """The metrics of one worker process, in a registry of its own."""

    def __init__(self, worker: str, read: Callable[[], Mapping[str, Any]]) -> None:
        self.worker = worker
        self.registry = CollectorRegistry(auto_describe=True)
        self._tasks = Counter(
            "amqpq_tasks",
            "Tasks by name and final state",
            ["worker", "task", "state"],
            registry=self.registry,
        )
        self._runtime = Histogram(
            "amqpq_task_runtime_seconds",
            "Task run time (in the pool), by task",
            ["worker", "task"],
            buckets=RUNTIME_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_WorkerCollector(worker, read))
        self._server: Any = None
        self.port: int | None = None

    def task_event(self, state: str, task: str, task_id: str, fields: Mapping[str, Any]) -> None:
        if state not in _FINAL:
            return
        self._tasks.labels(self.worker, task, state).inc()
        runtime = fields.get("runtime")
        if runtime is not None:
            self._runtime.labels(self.worker, task).observe(float(runtime))

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` over HTTP in a daemon thread."""
        if not 1 <= port <= _MAX_PORT:
            raise ConfigError(f"--metrics-port: port {port} is out of range (1-{_MAX_PORT})")
        try:
            server, _thread = start_http_server(port, addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {port}: cannot listen on {addr}:{port}: {exc}"
            ) from exc
        self._server = server
        self.port = port
        log.info("metrics served on http://%s:%d/metrics", addr, port)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def metrics_port_for(base: int | None, index: int) -> int | None:
    """The port of worker process ``index`` under a supervisor (base + index)."""
    return None if base is None else base + index


def metrics_ports(base: int, count: int) -> list[int]:
    """The ports of worker processes 0..count-1; a range past 65535 is a ConfigError."""
    last = base + count - 1
    if base < 1 or last > _MAX_PORT:
        raise ConfigError(
            f"--metrics-port {base} with {count} worker process(es) needs ports "
            f"{base}-{last}; ports go up to {_MAX_PORT}"
        )
    return list(range(base, last + 1))


def check_metrics_ports(base: int, count: int, addr: str = "0.0.0.0") -> list[int]:
    """Every port the ``count`` worker processes will serve on, each checked free on ``addr``.

    Call it before forking: a child that cannot listen fails at start, and a
    supervisor would replace it again and again."""
    ports = metrics_ports(base, count)
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    for index, port in enumerate(ports):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the HTTP server does, so a port in TIME_WAIT counts as free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((addr, port))
            except OSError as exc:
                raise ConfigError(
                    f"--metrics-port {base}: port {port} (worker process {index} of {count}) "
                    f"cannot be used on {addr}: {exc.strerror or exc}"
                ) from exc
    return ports


def prefetch_by_queue(queues: Sequence[str], prefetch: int) -> dict[str, int]:
    return dict.fromkeys(queues, prefetch)
