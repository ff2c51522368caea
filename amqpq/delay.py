"""Broker-side delays: a delay in milliseconds -> the entry exchange and headers.

See docs/architecture.md, "Delays without plugins". Pure functions only; the
protocol's names and numbers live in :mod:`amqpq.wire`, shared with the topology
layer that declares the objects they name.
"""

from __future__ import annotations

from dataclasses import dataclass

from amqpq.wire import (
    DELAY_LEVELS,
    HEADER_DELAY_EXCHANGE,
    HEADER_DELAY_QUEUE,
    MAX_DELAY_MS,
    delay_bit_header,
    delay_exchange_name,
)

__all__ = [
    "DELAY_LEVELS",
    "HEADER_DELAY_EXCHANGE",
    "HEADER_DELAY_QUEUE",
    "MAX_DELAY_MS",
    "DelayPlan",
    "bit_header",
    "plan_delay",
]

# ``bit_header`` is the sender's name for the protocol's per-level header.
bit_header = delay_bit_header


@dataclass(frozen=True, slots=True)
class DelayPlan:
    """Where to publish a delayed message and which headers steer it through the levels."""

    exchange: str
    headers: dict[str, str]
    delay_ms: int


def plan_delay(
    delay_ms: int,
    *,
    prefix: str = "amqpq",
    target_exchange: str | None = None,
    target_queue: str | None = None,
) -> DelayPlan:
    """Plan a delay of ``delay_ms`` (clamped to ``MAX_DELAY_MS``) towards an exchange or a queue.

    Exactly one target: ``target_exchange`` re-routes by the message's own routing
    key and headers after the delay; ``target_queue`` lands in that queue only.
    """
    if (target_exchange is None) == (target_queue is None):
        raise ValueError("name exactly one of target_exchange and target_queue")
    delay_ms = max(1, min(int(delay_ms), MAX_DELAY_MS))
    top = delay_ms.bit_length() - 1
    headers = {bit_header(level): "1" if delay_ms >> level & 1 else "0" for level in range(top + 1)}
    if target_exchange is not None:
        headers[HEADER_DELAY_EXCHANGE] = target_exchange
    else:
        assert target_queue is not None
        headers[HEADER_DELAY_QUEUE] = target_queue
    return DelayPlan(exchange=delay_exchange_name(prefix, top), headers=headers, delay_ms=delay_ms)
