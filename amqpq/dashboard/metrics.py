"""``GET /metrics`` of the dashboard: the history and the queues in Prometheus' text format.

Tasks by name and state, a runtime histogram of the latest finished tasks, queue
depths and workers online, computed from the index and the management API when
scraped (nothing is kept in memory between scrapes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from amqpq.dashboard.index import HistoryIndex

__all__ = ["render_metrics"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class _Snapshot(Collector):
    def __init__(self, index: HistoryIndex, status: dict[str, Any] | None) -> None:
        self._index = index
        self._status = status

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "amqpq_dashboard_tasks",
            "Tasks in the dashboard's history by name and latest state",
            labels=["task", "state"],
        )
        for name, states in self._index.counts().items():
            for state, count in states.items():
                tasks.add_metric([name, state], count)
        yield tasks

        runtimes: dict[str, list[float]] = {}
        for name, runtime in self._index.runtimes():
            runtimes.setdefault(name, []).append(runtime)
        histogram = HistogramMetricFamily(
            "amqpq_dashboard_task_runtime_seconds",
            "Runtime of the latest finished tasks in the history",
            labels=["task"],
        )
        for name, values in runtimes.items():
            buckets = [(str(b), sum(1 for v in values if v <= b)) for b in _BUCKETS]
            buckets.append(("+Inf", len(values)))
            histogram.add_metric([name], buckets, sum(values))
        yield histogram

        online = GaugeMetricFamily("amqpq_dashboard_workers_online", "Workers heard from lately")
        online.add_metric([], sum(1 for w in self._index.workers() if w["online"]))
        yield online

        if self._status is None:
            return
        depth = GaugeMetricFamily(
            "amqpq_queue_messages", "Messages in a queue by kind", labels=["queue", "kind"]
        )
        consumers = GaugeMetricFamily(
            "amqpq_queue_consumers", "Consumers of a queue", labels=["queue"]
        )
        for queue in self._status["queues"]:
            depth.add_metric([queue["name"], "ready"], queue["ready"])
            depth.add_metric([queue["name"], "unacked"], queue["unacked"])
            if queue.get("dead_letters") is not None:
                depth.add_metric([queue["name"], "dead_letters"], queue["dead_letters"])
            consumers.add_metric([queue["name"]], queue["consumers"])
        yield depth
        yield consumers
        if self._status.get("delayed") is not None:
            delayed = GaugeMetricFamily("amqpq_delayed_messages", "Messages in the delay levels")
            delayed.add_metric([], self._status["delayed"])
            yield delayed


def render_metrics(index: HistoryIndex, status: dict[str, Any] | None) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(index, status))
    return generate_latest(registry).decode()
