"""When a schedule fires: pure functions of a schedule and instants (aware UTC datetimes).

A *tick* is the instant a schedule fires. Ticks are a fixed grid, the same for
every beat process, so a tick names its task: ``beat:<schedule>:<tick ISO>``.

- ``interval: S``: every multiple of S seconds since the Unix epoch (UTC), counted
  in integer microseconds (``interval: 60`` fires at every full minute, ``3600``
  at every full hour UTC).
- ``cron:``: the wall-clock times the expression matches in the schedule's time
  zone. Daylight saving time: a wall time that does not exist (clocks jump from
  02:00 to 03:00) fires at the jump, so ``30 2 * * *`` runs at 03:00 that day; a
  wall time that happens twice (clocks go back) fires once, the first time, and
  the repeated hour does not fire again. Ticks never go backwards.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from amqpq.topology.models import Schedule

__all__ = [
    "Due",
    "describe_next_run",
    "due_ticks",
    "last_tick_at_or_before",
    "next_tick_after",
    "tick_id",
    "tick_iso",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# A broken expression or clock must not spin forever.
_MAX_STEPS = 100_000


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("ticks are computed on aware datetimes")
    return value.astimezone(UTC)


def _micros(value: datetime) -> int:
    return (_utc(value) - _EPOCH) // _US


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _interval_us(schedule: Schedule) -> int:
    assert schedule.interval is not None
    return max(1, round(schedule.interval * 1_000_000))


def _wall(instant: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    """The naive local wall-clock time of an instant."""
    # Through UTC: astimezone() to the zone a datetime already has returns it unchanged,
    # even for a wall time that does not exist.
    return instant.astimezone(UTC).astimezone(tz).replace(tzinfo=None)


def _instant(wall: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    """The instant a cron wall time fires: the first occurrence, or the jump over a gap."""
    first = wall.replace(tzinfo=tz, fold=0)
    if _wall(first, tz) == wall:
        return first.astimezone(UTC)
    # ``wall`` does not exist (the clocks jumped over it). fold=0 reads it with the offset
    # before the jump, which lands after the jump; search the jump itself (the first
    # instant whose wall time is at or after ``wall``) between the two readings.
    low = _micros(wall.replace(tzinfo=tz, fold=1))
    high = _micros(first)
    low, high = min(low, high), max(low, high)
    while low < high:
        middle = (low + high) // 2
        if _wall(_from_micros(middle), tz) >= wall:
            high = middle
        else:
            low = middle + 1
    return _from_micros(high)


def _cron_walls(expression: str, start: datetime, *, backwards: bool) -> Iterator[datetime]:
    iterator = croniter(expression, start)
    for _ in range(_MAX_STEPS):
        value = iterator.get_prev(datetime) if backwards else iterator.get_next(datetime)
        yield value
    raise RuntimeError(f"cron {expression!r}: no tick within {_MAX_STEPS} steps")


def next_tick_after(schedule: Schedule, after: datetime) -> datetime:
    """The first tick strictly after ``after``."""
    if schedule.interval is not None:
        step = _interval_us(schedule)
        return _from_micros((_micros(after) // step + 1) * step)
    assert schedule.cron is not None
    after = _utc(after)
    tz = schedule.tz
    # Start a minute early: croniter works on whole minutes and a gap's walls map back.
    start = _wall(after, tz).replace(second=0, microsecond=0) - timedelta(minutes=1)
    for wall in _cron_walls(schedule.cron, start, backwards=False):
        instant = _instant(wall, tz)
        if instant > after:
            return instant
    raise AssertionError("unreachable")


def last_tick_at_or_before(schedule: Schedule, when: datetime) -> datetime:
    """The latest tick at or before ``when``."""
    if schedule.interval is not None:
        step = _interval_us(schedule)
        return _from_micros(_micros(when) // step * step)
    assert schedule.cron is not None
    when = _utc(when)
    tz = schedule.tz
    start = _wall(when, tz).replace(second=0, microsecond=0) + timedelta(minutes=1)
    # Walls map to instants in order (never backwards), so the first fit is the latest.
    for wall in _cron_walls(schedule.cron, start, backwards=True):
        instant = _instant(wall, tz)
        if instant <= when:
            return instant
    raise AssertionError("unreachable")


def tick_iso(tick: datetime) -> str:
    """``2026-03-29T07:00:00Z``: UTC, microseconds only when the tick has some."""
    return _utc(tick).isoformat().replace("+00:00", "Z")


def describe_next_run(schedule: Schedule, after: datetime) -> str:
    """When ``schedule`` fires next after ``after``: in its own time zone, then in UTC.

    ``2026-12-03 09:00:00 Asia/Seoul (2026-12-03T00:00:00Z)``; UTC schedules once.
    """
    tick = next_tick_after(schedule, after)
    utc = tick_iso(tick)
    if schedule.timezone == "UTC":
        return utc
    local = tick.astimezone(schedule.tz).replace(tzinfo=None).isoformat(sep=" ")
    return f"{local} {schedule.timezone} ({utc})"


def tick_id(schedule_name: str, tick: datetime) -> str:
    """The task id of one tick: the same in every beat process, so duplicates are visible."""
    return f"beat:{schedule_name}:{tick_iso(tick)}"


@dataclass(frozen=True, slots=True)
class Due:
    """What to do for one schedule now: ``send`` these ticks (oldest first), ``skipped`` others."""

    send: tuple[datetime, ...] = ()
    skipped: int = 0
    skipped_range: tuple[datetime, datetime] | None = None
    """The first and last skipped tick, for the log line."""


def due_ticks(
    schedule: Schedule,
    last: datetime,
    now: datetime,
    *,
    catch_up: timedelta,
    limit: int = 1000,
) -> Due:
    """The ticks in ``(last, now]`` to send now.

    Every tick of the last ``catch_up`` before ``now`` is sent (a leader handover or a
    restart loses none). Ticks older than that were missed while no beat ran: of those,
    only the most recent is sent, and only when no tick of the window is (one late run
    instead of a flood, like Celery); the others are counted in ``skipped``. At most
    ``limit`` ticks are sent per call; the rest wait for the next call.
    """
    last, now = _utc(last), _utc(now)
    if now <= last:
        return Due()
    window_start = max(last, now - catch_up)
    send: list[datetime] = []
    cursor = window_start
    while len(send) < limit:
        tick = next_tick_after(schedule, cursor)
        if tick > now:
            break
        send.append(tick)
        cursor = tick
    skipped = 0
    skipped_range: tuple[datetime, datetime] | None = None
    if window_start > last:
        # Missed ticks before the window: count them (bounded), keep the latest if needed.
        older = last_tick_at_or_before(schedule, window_start)
        if older > last:
            first_missed = next_tick_after(schedule, last)
            last_missed = older
            skipped = _count_ticks(schedule, last, older)
            if not send:
                send.append(older)
                skipped -= 1
                last_missed = last_tick_at_or_before(schedule, older - _US)
            if skipped:
                skipped_range = (first_missed, last_missed)
    return Due(tuple(send), skipped, skipped_range)


def _count_ticks(schedule: Schedule, after: datetime, until: datetime, cap: int = 10_000) -> int:
    """Ticks in ``(after, until]``, counted up to ``cap`` (a log line, not an invariant)."""
    if schedule.interval is not None:
        step = _interval_us(schedule)
        return _micros(until) // step - _micros(after) // step
    count = 0
    cursor = after
    while count < cap:
        tick = next_tick_after(schedule, cursor)
        if tick > until:
            break
        count += 1
        cursor = tick
    return count
