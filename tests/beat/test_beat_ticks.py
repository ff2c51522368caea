"""When schedules fire, the catch-up policy and the token: pure, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from amqpq.beat import BeatToken, due_ticks, last_tick_at_or_before, merge_ticks, next_tick_after
from amqpq.beat.ticks import describe_next_run, tick_id, tick_iso
from amqpq.errors import DecodeError
from amqpq.topology.models import Schedule

BERLIN = ZoneInfo("Europe/Berlin")
SEOUL = ZoneInfo("Asia/Seoul")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def cron(expression: str, timezone: str = "UTC") -> Schedule:
    return Schedule(task="t.x", cron=expression, timezone=timezone)


def every(seconds: float) -> Schedule:
    return Schedule(task="t.x", interval=seconds)


def ticks_after(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    ticks = []
    for _ in range(count):
        start = next_tick_after(schedule, start)
        ticks.append(start)
    return ticks


# -- intervals ----------------------------------------------------------------------------------


def test_interval_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    assert ticks_after(every(60), utc(2026, 1, 1, 10, 0, 30), 2) == [
        utc(2026, 1, 1, 10, 1),
        utc(2026, 1, 1, 10, 2),
    ]
    assert next_tick_after(every(3600), utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 11)


def test_a_fractional_interval_is_exact_in_microseconds() -> None:
    half = every(0.5)
    assert ticks_after(half, utc(2026, 1, 1), 3) == [
        utc(2026, 1, 1) + timedelta(milliseconds=500 * n) for n in (1, 2, 3)
    ]
    assert last_tick_at_or_before(every(1.5), utc(2026, 1, 1, 0, 0, 2)) == datetime(
        2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC
    )


def test_a_tick_is_at_or_before_itself_and_strictly_before_its_successor() -> None:
    tick = utc(2026, 1, 1, 10, 5)
    assert last_tick_at_or_before(every(60), tick) == tick
    assert next_tick_after(every(60), tick) == utc(2026, 1, 1, 10, 6)


# -- cron ---------------------------------------------------------------------------------------


def test_cron_is_read_in_the_schedules_time_zone() -> None:
    # 09:00 in Seoul (UTC+9, no DST) is 00:00 UTC
    daily = cron("0 9 * * *", "Asia/Seoul")
    assert next_tick_after(daily, utc(2026, 5, 1, 12)) == utc(2026, 5, 2, 0)
    assert next_tick_after(daily, utc(2026, 5, 1, 12)).astimezone(SEOUL).hour == 9
    assert last_tick_at_or_before(daily, utc(2026, 5, 1, 12)) == utc(2026, 5, 1, 0)


def test_cron_keeps_its_wall_clock_time_across_daylight_saving_changes() -> None:
    daily = cron("0 9 * * *", "Europe/Berlin")
    ticks = ticks_after(daily, utc(2026, 3, 27, 12), 3)
    assert [t.astimezone(BERLIN).hour for t in ticks] == [9, 9, 9]
    # 08:00 UTC before the change (CET, +1), 07:00 UTC after it (CEST, +2)
    assert ticks == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]


def test_a_wall_time_skipped_by_spring_forward_fires_at_the_jump() -> None:
    # Berlin, 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC)
    at_half_past_two = cron("30 2 * * *", "Europe/Berlin")
    assert ticks_after(at_half_past_two, utc(2026, 3, 28, 12), 2) == [
        utc(2026, 3, 29, 1),  # 03:00 CEST, the jump
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST again the next day
    ]


def test_frequent_cron_ticks_through_spring_forward_neither_repeat_nor_stall() -> None:
    every_20 = cron("*/20 * * * *", "Europe/Berlin")
    ticks = ticks_after(every_20, utc(2026, 3, 29, 0, 30), 4)
    assert [t.astimezone(BERLIN).strftime("%H:%M") for t in ticks] == [
        "01:40",
        "03:00",
        "03:20",
        "03:40",
    ]
    assert ticks == sorted(set(ticks))


def test_a_wall_time_repeated_by_fall_back_fires_once_the_first_time() -> None:
    # Berlin, 2026-10-25: clocks go back from 03:00 CEST to 02:00 CET (01:00 UTC)
    at_half_past_two = cron("30 2 * * *", "Europe/Berlin")
    assert ticks_after(at_half_past_two, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first 02:30
        utc(2026, 10, 26, 1, 30),  # 02:30 CET the next day
    ]
    hourly = cron("0 * * * *", "Europe/Berlin")
    ticks = ticks_after(hourly, utc(2026, 10, 24, 23, 30), 3)
    # 02:00 CEST, then 03:00 CET: the repeated 02:00 does not fire again
    assert ticks == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)]


def test_last_tick_at_or_before_inverts_next_tick_after_around_dst() -> None:
    schedule = cron("*/20 * * * *", "Europe/Berlin")
    for start in (utc(2026, 3, 29, 0, 30), utc(2026, 10, 24, 23, 30)):
        for tick in ticks_after(schedule, start, 8):
            assert last_tick_at_or_before(schedule, tick) == tick
            assert last_tick_at_or_before(schedule, tick + timedelta(seconds=59)) == tick


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_tick_after(every(1), datetime(2026, 1, 1))


# -- due ticks and the catch-up policy ------------------------------------------------------------


def test_nothing_is_due_before_the_next_tick() -> None:
    due = due_ticks(
        every(60), utc(2026, 1, 1, 10), utc(2026, 1, 1, 10, 0, 59), catch_up=timedelta(60)
    )
    assert due.send == ()
    assert due.skipped == 0


def test_every_tick_missed_within_the_catch_up_window_is_sent_in_order() -> None:
    # Given the last tick at 10:00:00 and a handover that took 4.5 s
    due = due_ticks(
        every(1),
        utc(2026, 1, 1, 10),
        utc(2026, 1, 1, 10, 0, 4, 500000),
        catch_up=timedelta(minutes=1),
    )
    assert due.send == tuple(utc(2026, 1, 1, 10, 0, s) for s in (1, 2, 3, 4))
    assert due.skipped == 0


def test_ticks_older_than_the_window_are_skipped_but_counted() -> None:
    # Given a beat that did not run for an hour, every-minute schedule, 5-minute window
    due = due_ticks(
        every(60), utc(2026, 1, 1, 9), utc(2026, 1, 1, 10, 0, 30), catch_up=timedelta(minutes=5)
    )
    assert due.send == (*(utc(2026, 1, 1, 9, m) for m in (56, 57, 58, 59)), utc(2026, 1, 1, 10))
    assert due.skipped == 55
    assert due.skipped_range == (utc(2026, 1, 1, 9, 1), utc(2026, 1, 1, 9, 55))


def test_with_no_tick_in_the_window_only_the_latest_missed_tick_is_sent() -> None:
    # Given a daily 09:00 Seoul job and a beat that was down for three days
    daily = cron("0 9 * * *", "Asia/Seoul")
    due = due_ticks(daily, utc(2026, 5, 1, 0), utc(2026, 5, 4, 3), catch_up=timedelta(minutes=1))
    assert due.send == (utc(2026, 5, 4, 0),)
    assert due.skipped == 2
    assert due.skipped_range == (utc(2026, 5, 2, 0), utc(2026, 5, 3, 0))


def test_a_zero_window_behaves_like_celery_one_late_run() -> None:
    due = due_ticks(every(10), utc(2026, 1, 1), utc(2026, 1, 1, 1), catch_up=timedelta(0))
    assert due.send == (utc(2026, 1, 1, 1),)
    assert due.skipped == 359


def test_a_flood_is_capped_per_round() -> None:
    due = due_ticks(
        every(0.001),
        utc(2026, 1, 1),
        utc(2026, 1, 1, 0, 0, 5),
        catch_up=timedelta(seconds=5),
        limit=50,
    )
    assert len(due.send) == 50


# -- ids and tokens -----------------------------------------------------------------------------


def test_task_ids_name_the_schedule_and_the_tick_in_utc() -> None:
    tick = datetime(2026, 5, 1, 9, tzinfo=SEOUL)
    assert tick_id("daily-report", tick) == "beat:daily-report:2026-05-01T00:00:00Z"
    assert (
        tick_iso(datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)) == "2026-01-01T00:00:01.500000Z"
    )


def test_tokens_merge_to_the_latest_tick_of_each_schedule_in_any_order() -> None:
    a = {"x": utc(2026, 1, 1, 10), "y": utc(2026, 1, 1, 9)}
    b = {"x": utc(2026, 1, 1, 9), "z": utc(2026, 1, 1, 8)}
    expected = {"x": utc(2026, 1, 1, 10), "y": utc(2026, 1, 1, 9), "z": utc(2026, 1, 1, 8)}
    assert merge_ticks(a, b) == merge_ticks(b, a) == merge_ticks(a, b, a, {}) == expected


def test_a_token_round_trips_and_ignores_keys_it_does_not_know() -> None:
    token = BeatToken(ticks={"x": utc(2026, 1, 1, 10)}, written_by="amqpq beat vm:1")
    body = token.encode()
    assert b'"x":"2026-01-01T10:00:00Z"' in body
    assert BeatToken.decode(body).ticks == {"x": utc(2026, 1, 1, 10)}
    assert BeatToken.decode(b'{"amqpq_beat": 1, "ticks": {}, "future": true}').ticks == {}


def test_a_broken_or_newer_token_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        BeatToken.decode(b"not json")
    with pytest.raises(DecodeError, match="newer"):
        BeatToken.decode(b'{"amqpq_beat": 99}')


# -- what the beat and `amqpq status` print ---------------------------------------------------


def test_the_next_run_is_shown_in_the_schedules_time_zone_and_in_utc() -> None:
    nightly = cron("30 2 * * *", "Europe/Berlin")
    assert describe_next_run(nightly, utc(2026, 12, 2, 12, 0)) == (
        "2026-12-03 02:30:00 Europe/Berlin (2026-12-03T01:30:00Z)"
    )


def test_a_utc_schedule_shows_its_next_run_once() -> None:
    assert describe_next_run(every(60), utc(2026, 12, 2, 12, 0, 30)) == "2026-12-02T12:01:00Z"
