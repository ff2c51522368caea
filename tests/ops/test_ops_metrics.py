"""Prometheus metrics of ``amqpq worker --workers N --metrics-port P``: one port per process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from amqpq.app import App
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from tests.ops.ops_helpers import HERE, TOPOLOGY
from tests.support.processes import Processes, amqpq_env
from tests.support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


def free_port_pair() -> int:
    """A port P such that P and P+1 are both free right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("0.0.0.0", port))
                second.bind(("0.0.0.0", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``/metrics`` of one process: sample name -> [(labels, value)]."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def worker_label(samples: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    [(labels, _)] = samples["amqpq_tasks_in_flight"]
    return labels["worker"]


def succeeded(samples: dict[str, list[tuple[dict[str, str], float]]], task: str) -> float:
    return sum(
        value
        for labels, value in samples.get("amqpq_tasks_total", [])
        if labels.get("task") == task and labels.get("state") == "succeeded"
    )


def child_pids(log_path: Path) -> list[int]:
    match = re.search(r"supervisor started workers=\d+ pids=([\d,]+)", log_path.read_text())
    assert match, log_path.read_text()
    return [int(pid) for pid in match.group(1).split(",")]


def test_each_of_n_worker_processes_serves_its_own_metrics_on_port_plus_index(
    declared: Settings,
    broker_url: str,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # Given `amqpq worker --workers 2 --metrics-port P`
    port = free_port_pair()
    supervisor = start_worker(
        "-Q", "work", "--workers", "2", "-c", "2", "--metrics-port", str(port)
    )
    log_path = tmp_path / "worker-0.log"
    host = socket.gethostname()
    children = child_pids(log_path)
    assert len(children) == 2
    assert supervisor.pid not in children

    # Then ports P and P+1 each answer for one of the two worker processes (not the supervisor)
    def label_on(p: int) -> Callable[[], str]:
        return lambda: worker_label(scrape(p))

    labels = {
        p: eventually(label_on(p), 30.0, what=f"metrics on port {p}", ignoring=(httpx.HTTPError,))
        for p in (port, port + 1)
    }
    assert sorted(labels.values()) == sorted(f"{host}:{pid}" for pid in children)

    # When a few tasks run
    app = App("ops-metrics", settings=Settings(url=broker_url), topology=load_topology(TOPOLOGY))
    results = [app.send_task("ops.add", [i, i]) for i in range(10)]
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(10)]

    # Then the two endpoints together count each of them once
    def all_counted() -> float | None:
        total = sum(succeeded(scrape(p), "ops.add") for p in (port, port + 1))
        return total if total >= 10 else None

    assert (
        eventually(
            all_counted, 30.0, what="10 succeeded tasks in the metrics", ignoring=(httpx.HTTPError,)
        )
        == 10
    )
    for p in (port, port + 1):
        samples = scrape(p)
        assert {lab["worker"] for lab, _ in samples["amqpq_tasks_total"]} <= {labels[p]}
        assert [(lab["queue"], v) for lab, v in samples["amqpq_prefetch"]] == [("work", 2.0)]

    # When the worker process on P+1 dies, its replacement serves the same port
    [victim] = [pid for pid in children if labels[port + 1] == f"{host}:{pid}"]
    os.kill(victim, signal.SIGKILL)

    def replaced() -> str | None:
        label = worker_label(scrape(port + 1))
        return label if label != f"{host}:{victim}" else None

    new_label = eventually(
        replaced, 30.0, what="a replacement worker on the same port", ignoring=(httpx.HTTPError,)
    )
    assert new_label.startswith(f"{host}:")
    assert new_label != labels[port]
    assert worker_label(scrape(port)) == labels[port]
    assert succeeded(scrape(port + 1), "ops.add") == 0  # a new process starts from zero

    # When the supervisor is stopped, both ports close
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    for p in (port, port + 1):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=2)


def test_a_taken_metrics_port_stops_the_command_with_one_line_and_exit_2(
    declared: Settings, broker_url: str, amqpq_processes: Processes
) -> None:
    # Given port P+1 is taken by someone else
    port = free_port_pair()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port + 1))
        taken.listen()
        # When `--workers 2 --metrics-port P` starts
        process = amqpq_processes.start(
            "worker",
            *("-A", "ops_tasks", "-f", str(TOPOLOGY), "-Q", "work", "--workers", "2"),
            *("--metrics-port", str(port)),
            env=amqpq_env(broker_url),
            cwd=HERE,
        )
        try:
            code = process.process.wait(60)
        finally:
            process.stop()
    # Then the whole command stops (no restart loop) with exit 2 and a readable reason
    text = process.log()
    assert code == 2, text
    assert str(port + 1) in text
    assert "Traceback" not in text
    assert text.count("exited with") == 0  # never restarted
