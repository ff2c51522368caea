"""A fleet under a fault: what was sent, what ran where and when, and the figures of it.

Tasks of a fault test call ``record_run(task_id)`` when they finish: one line
``<task id> <pid> <unix time>`` appended to the file named by ``AMQPQ_TEST_RUNS``. The
test sends through amqpq's own producer (``Sender``, in a thread), injects its fault and
then reads the run log:

    runs = RunLog(tmp_path / "runs.log")              # env: runs.env()
    sender = Sender(lambda i: app.send_task("cl.work", [i]).id, burst=200, rate=50, duration=8)
    sender.start(); ...; killed_at = cluster.kill(node); sender.join()
    runs.wait_for(sender.confirmed)                   # until each ran, or nothing moves
    figures = FaultFigures.of("leader kill", sender, runs, fault_at=killed_at)
    assert figures.lost == 0 and figures.most_runs <= 2
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

RUNS_ENV = "AMQPQ_TEST_RUNS"


def record_run(task_id: str) -> None:
    """Called by a test task as it finishes (a no-op outside a fault test)."""
    path = os.environ.get(RUNS_ENV)
    if path:
        # One short append per line: lines of concurrent writers do not interleave.
        with open(path, "a") as runs:
            runs.write(f"{task_id} {os.getpid()} {time.time():.6f}\n")


@dataclass(frozen=True)
class Run:
    task_id: str
    pid: int
    at: float


class RunLog:
    """The runs recorded by the workers of one test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def env(self) -> dict[str, str]:
        return {RUNS_ENV: str(self.path)}

    def runs(self) -> list[Run]:
        found = []
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:  # a line being written is skipped until complete
                found.append(Run(parts[0], int(parts[1]), float(parts[2])))
        return found

    def counts(self) -> Counter[str]:
        return Counter(run.task_id for run in self.runs())

    def wait_for(self, ids: Iterable[str], *, idle: float = 20.0, timeout: float = 120.0) -> bool:
        """Until every id ran; False once nothing new ran for ``idle`` s (or ``timeout``)."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        seen = -1
        moved = time.monotonic()
        while True:
            runs = self.runs()
            if wanted <= {run.task_id for run in runs}:
                return True
            if len(runs) != seen:
                seen, moved = len(runs), time.monotonic()
            now = time.monotonic()
            if now - moved > idle or now > deadline:
                return False
            time.sleep(0.2)


class Sender(threading.Thread):
    """Sends ``burst`` tasks at once, then ``rate`` per second until ``duration`` s have passed.

    ``send(i)`` returns the id of a task the broker confirmed; one that raises was not
    confirmed and is counted in ``errors`` (the caller's to retry; not a loss).
    """

    def __init__(
        self,
        send: Callable[[int], str],
        *,
        burst: int = 0,
        rate: float = 50.0,
        duration: float = 5.0,
    ) -> None:
        super().__init__(name="fleet-sender", daemon=True)
        self._send = send
        self.burst = burst
        self.rate = rate
        self.duration = duration
        self.confirmed: list[str] = []
        self.errors: list[str] = []
        self.started_at = 0.0
        self._stop_event = threading.Event()

    def _one(self, index: int) -> None:
        try:
            self.confirmed.append(self._send(index))
        except Exception as exc:  # a failed send is data here, not a test error
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def run(self) -> None:
        self.started_at = time.time()
        index = 0
        for index in range(self.burst):
            self._one(index)
        end = time.monotonic() + self.duration
        pause = 1.0 / self.rate if self.rate > 0 else 0.0
        while time.monotonic() < end and not self._stop_event.is_set():
            index += 1
            self._one(index)
            time.sleep(pause)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(60)


@dataclass(frozen=True)
class FaultFigures:
    """What a fault cost: the figures printed in the test output and in docs/operations.md."""

    scenario: str
    sent: int
    send_errors: int
    lost: int
    duplicates: int
    most_runs: int
    longest_pause: float

    @classmethod
    def of(
        cls, scenario: str, confirmed: list[str], send_errors: int, runs: RunLog, fault_at: float
    ) -> FaultFigures:
        counts = runs.counts()
        sent = set(confirmed)
        return cls(
            scenario=scenario,
            sent=len(sent),
            send_errors=send_errors,
            lost=len(sent - set(counts)),
            duplicates=sum(n - 1 for task_id, n in counts.items() if task_id in sent and n > 1),
            most_runs=max((counts[i] for i in sent), default=0),
            longest_pause=longest_pause(runs.runs(), sent, fault_at),
        )

    def line(self) -> str:
        return (
            f"{self.scenario}: sent={self.sent} send_errors={self.send_errors} lost={self.lost} "
            f"duplicates={self.duplicates} most_runs={self.most_runs} "
            f"longest_pause={self.longest_pause:.2f}s"
        )


def longest_pause(runs: list[Run], sent: set[str], fault_at: float) -> float:
    """The longest time without any finished task, from the fault until the last task's
    first run (while there was work to do: a drained queue is not a pause)."""
    first_runs: dict[str, float] = {}
    for run in runs:
        if run.task_id in sent:
            first_runs.setdefault(run.task_id, run.at)
    if not first_runs:
        return 0.0
    end = max(first_runs.values())
    times = sorted(run.at for run in runs if fault_at <= run.at <= end)
    if not times:
        return 0.0
    gaps = [times[0] - fault_at] + [b - a for a, b in itertools.pairwise(times)]
    return max(gaps)
