"""The scheduler: ``amqpq beat`` sends the topology's ``schedules:`` (docs/scheduler.md)."""

from amqpq.beat.main import Beat, BeatOptions
from amqpq.beat.state import BeatToken, merge_ticks
from amqpq.beat.ticks import Due, due_ticks, last_tick_at_or_before, next_tick_after, tick_id

__all__ = [
    "Beat",
    "BeatOptions",
    "BeatToken",
    "Due",
    "due_ticks",
    "last_tick_at_or_before",
    "merge_ticks",
    "next_tick_after",
    "tick_id",
]
