"""The worker's events path alone, without a broker: CPU per task of its events.

    .venv/bin/python -m benchmarks.events_path [--tasks 20000] [--rounds 5]

Each task's received, started and succeeded events go through the worker's fan-out
(``TaskEvents``) into the ``EventPublisher``'s batch, and the batches are encoded as
the stream records a worker publishes (JSON, zlib). Steadier than a drain on a busy
machine: it measures only the Python work events add to a task, which
``benchmarks.events_cost`` compares with the worker's whole CPU per task.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from amqpq.envelope import TaskEnvelope
from amqpq.events import BATCH_SIZE, EventPublisher
from amqpq.worker.fanout import TaskEvents
from amqpq.worker.stats import WorkerStats


class _Batches(EventPublisher):
    """The publisher's batching and encoding, with nothing to publish to."""

    def __init__(self) -> None:  # no broker: only what task_event and _encode use
        self._pending: list[dict[str, Any]] = []
        self._max_pending = 10**9
        self._batch_size = BATCH_SIZE
        self._full = asyncio.Event()
        self._worker = "bench:1"

    def encode_all(self) -> int:
        size = 0
        while self._pending:
            batch, self._pending = self._pending[:BATCH_SIZE], self._pending[BATCH_SIZE:]
            size += len(self._encode(batch))
        return size


def _round(envelopes: list[TaskEnvelope]) -> float:
    batches = _Batches()
    events = TaskEvents(WorkerStats(), None, [batches])  # type: ignore[arg-type]
    start = time.perf_counter()
    for envelope in envelopes:
        events.received(envelope.task, envelope.id, "bench", envelope=envelope, size=120)
        events.started(envelope.task, envelope.id, "bench")
        events.ended()
        events.succeeded(envelope.task, envelope.id, "bench", 0.0001)
    batches.encode_all()
    return (time.perf_counter() - start) / len(envelopes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    envelopes = [
        TaskEnvelope(id=str(uuid.uuid4()), task="bench.noop", args=[], kwargs={})
        for _ in range(args.tasks)
    ]
    per_task = [_round(envelopes) for _ in range(args.rounds)]
    print(
        f"events path: {statistics.median(per_task) * 1e6:.1f} us per task "
        f"(median of {args.rounds} rounds of {args.tasks} tasks; "
        f"min {min(per_task) * 1e6:.1f}, max {max(per_task) * 1e6:.1f})"
    )


if __name__ == "__main__":
    main()
