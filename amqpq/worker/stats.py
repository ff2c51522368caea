"""What a worker counts (the metrics issue exposes these)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

__all__ = ["WorkerStats"]


@dataclass(slots=True)
class WorkerStats:
    received: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    redelayed: int = 0
    requeued: int = 0  # crashed child processes, shutdown, republish failures
    stale_acks: int = 0  # acks dropped because the channel closed under the task
    active: int = 0
    revoked: int = 0  # skipped (revoked before they ran) or terminated
    # Dead letters by reason: bad_json, bad_envelope, unknown_task, bad_arguments,
    # expired, too_large, failed, max_retries_exceeded.
    dead_lettered: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, object]:
        """Every counter as plain JSON-ready values (the counter of dead letters as a dict)."""
        return {
            f.name: dict(value) if isinstance(value := getattr(self, f.name), Counter) else value
            for f in fields(self)
        }
