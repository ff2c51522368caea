"""Helpers of the beat tests: their topology file and reading the task ids a beat sent."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "beat_topology.yaml"


def tick_of(task_id: str) -> datetime:
    """``beat:<schedule>:<tick ISO>`` -> the tick."""
    prefix, _schedule, iso = task_id.split(":", 2)
    assert prefix == "beat", task_id
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)


def ids_of(messages: list[Any]) -> Counter[str]:
    ids: Counter[str] = Counter()
    for message in messages:
        body = json.loads(message.body)
        assert message.message_id == body["id"]
        ids[body["id"]] += 1
    return ids
