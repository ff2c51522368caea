"""Helpers of the delay tests: their topology file and what waits in each delay level."""

from __future__ import annotations

from pathlib import Path

from aio_pika.abc import AbstractConnection

from tests.support.aio_clients import queue_count

HERE = Path(__file__).resolve().parent
TOPOLOGY_FILE = HERE / "delays_topology.yaml"


async def delay_level_counts(
    connection: AbstractConnection, prefix: str = "amqpq"
) -> dict[int, int]:
    """Messages waiting in each delay level queue, levels with none left out."""
    counts = {}
    for level in range(30):
        count = await queue_count(connection, f"{prefix}.delay.{level}")
        if count:
            counts[level] = count
    return counts
