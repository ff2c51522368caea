"""Delay planning: bits per level, entry at the highest set bit, one target."""

from __future__ import annotations

import pytest

from amqpq.delay import (
    HEADER_DELAY_EXCHANGE,
    HEADER_DELAY_QUEUE,
    MAX_DELAY_MS,
    bit_header,
    plan_delay,
)


def _delay_from(headers: dict[str, str]) -> int:
    return sum(1 << level for level in range(30) if headers.get(bit_header(level)) == "1")


@pytest.mark.parametrize(
    "ms", [1, 2, 3, 100, 1000, 2000, 60_000, 86_400_000, 7 * 86_400_000, MAX_DELAY_MS]
)
def test_the_bits_spell_the_delay_and_entry_is_the_highest_set_bit(ms: int) -> None:
    plan = plan_delay(ms, target_exchange="tasks")
    assert _delay_from(plan.headers) == ms
    assert plan.exchange == f"amqpq.delay.{ms.bit_length() - 1}"
    assert plan.headers[bit_header(ms.bit_length() - 1)] == "1"
    assert plan.headers[HEADER_DELAY_EXCHANGE] == "tasks"


def test_every_level_below_the_entry_has_a_bit_so_each_exchange_can_route() -> None:
    plan = plan_delay(0b100000, target_queue="q")
    assert [plan.headers[bit_header(level)] for level in range(6)] == ["0", "0", "0", "0", "0", "1"]
    assert bit_header(6) not in plan.headers
    assert plan.headers[HEADER_DELAY_QUEUE] == "q"


def test_delays_are_clamped_to_the_levels_and_to_at_least_one_ms() -> None:
    assert plan_delay(0, target_queue="q").delay_ms == 1
    assert plan_delay(MAX_DELAY_MS * 4, target_queue="q").delay_ms == MAX_DELAY_MS


def test_a_custom_prefix_names_the_entry_exchange() -> None:
    assert plan_delay(5, prefix="ops", target_queue="q").exchange == "ops.delay.2"


def test_exactly_one_target_is_required() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        plan_delay(5)
    with pytest.raises(ValueError, match="exactly one"):
        plan_delay(5, target_exchange="x", target_queue="q")
