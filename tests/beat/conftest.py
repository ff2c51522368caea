"""Beat test fixtures: real ``amqpq beat`` processes on the test's vhost."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from beat_helpers import BeatProcess


@pytest.fixture
def start_beat(broker_url: str, tmp_path: Path) -> Iterator[Callable[..., BeatProcess]]:
    """Factory: ``start_beat()`` runs ``amqpq beat -f beat_topology.yaml`` on the test's vhost."""
    beats: list[BeatProcess] = []
    env = {**os.environ, "AMQPQ_URL": broker_url, "PYTHONUNBUFFERED": "1"}
    env.pop("AMQPQ_TOPOLOGY", None)

    def start(*args: str) -> BeatProcess:
        beat = BeatProcess(list(args), env, tmp_path / f"beat-{len(beats)}.log")
        beats.append(beat)
        return beat

    yield start
    for beat in beats:
        beat.stop()
