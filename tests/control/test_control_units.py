"""Pure parts of the operations features: token bucket, event keys, hooks, limits, records."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from amqpq.app import App
from amqpq.cli.events import matches, parse_since
from amqpq.errors import ConfigError
from amqpq.events import bounded_repr, decode_record, event_message
from amqpq.revocations import RevocationRecord, revocation_message
from amqpq.worker.consumer_timeout import _SETTING, tasks_over
from amqpq.worker.hooks import Hooks
from amqpq.worker.ratelimit import RateLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_bucket_spaces_waiters_by_one_over_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5.0, clock=clock)
    # Five asked at once: the first goes now, the others every 200 ms
    assert [round(bucket.reserve(), 3) for _ in range(5)] == [0.0, 0.2, 0.4, 0.6, 0.8]
    # Once the reservations are used up and a second passes, one token is back (capacity 1)
    clock.now += 1.8
    assert bucket.reserve() == 0.0
    assert round(bucket.reserve(), 3) == 0.2


def test_a_rate_limiter_keeps_one_bucket_per_task() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert limiter.delay_for("a", 1.0) == 0.0
    assert limiter.delay_for("b", 1.0) == 0.0
    assert limiter.delay_for("a", 1.0) == pytest.approx(1.0)
    # a changed rate starts a new bucket
    assert limiter.delay_for("a", 100.0) == 0.0


def test_event_routing_keys_and_filters() -> None:
    message = event_message("task.succeeded", task="tasks.add", id="1", runtime=0.5, error=None)
    assert message.exchange == "amqpq.events"
    assert message.routing_key == "task.succeeded.tasks.add"
    assert not message.mandatory
    assert message.properties.delivery_mode == 1
    assert b'"error"' not in message.body  # None fields are left out
    started = {"type": "task.started", "task": "tasks.add", "queue": "q"}
    online = {"type": "worker.online"}
    assert matches(started, None, [], None)
    assert matches(online, None, [], None)
    assert matches(started, "tasks.add", ["started", "failed"], "q")
    assert not matches(started, "tasks.mul", [], None)
    assert not matches(started, None, ["failed"], None)
    assert not matches(started, None, [], "other")
    assert not matches(online, "tasks.add", [], None)  # worker events only unfiltered


def test_events_since_takes_a_duration_or_an_iso_time() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("2026-01-01T00:00:00", now) == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="--since 'soon'"):
        parse_since("soon", now)


def test_a_stream_record_is_a_batch_or_one_event() -> None:
    batch = b'{"worker":"w:1","events":[{"type":"task.received","ts":0},{"type":"x","n":null},3]}'
    assert decode_record(batch) == [
        {"type": "task.received", "timestamp": "1970-01-01T00:00:00.000+00:00", "worker": "w:1"},
        {"type": "x", "worker": "w:1"},  # None fields are left out
    ]
    assert decode_record(b'{"type":"task.sent"}') == [{"type": "task.sent"}]
    assert decode_record(zlib.compress(batch)) == decode_record(batch)  # a worker's record
    # Received and started written as one event come back as two
    merged = (
        b'{"worker":"w","events":[{"type":"task.started","id":"i","task":"t","queue":"q",'
        b'"args":[1],"received_ts":1000,"ts":2000}]}'
    )
    assert decode_record(merged) == [
        {
            "type": "task.received",
            "id": "i",
            "task": "t",
            "queue": "q",
            "args": [1],
            "timestamp": "1970-01-01T00:00:01.000+00:00",
            "worker": "w",
        },
        {
            "type": "task.started",
            "id": "i",
            "task": "t",
            "queue": "q",
            "timestamp": "1970-01-01T00:00:02.000+00:00",
            "worker": "w",
        },
    ]
    assert decode_record(b"not json") == []
    assert decode_record(b"[1, 2]") == []
    assert len(bounded_repr("x" * 10_000)) <= 1000


def test_hook_decorators_register_on_the_app_and_reach_the_worker() -> None:
    app = App(
        "h",
        topology=None,
    )  # type: ignore[arg-type]
    calls: list[str] = []

    @app.on_worker_start
    def start(**kw: Any) -> None:
        calls.append("start")

    @app.on_task_success
    def success(**kw: Any) -> None:
        calls.append(f"success {kw['result']}")

    app.on_task_failure = lambda **kw: calls.append("failure")  # the attribute style still works
    hooks = Hooks(app)
    hooks("worker_start", worker=None)
    hooks("task_success", request=None, task=None, result=3)
    hooks("task_failure", request=None, task=None, exception=None)
    assert calls == ["start", "success 3", "failure"]
    assert hooks.task_success
    assert hooks.any_task_hooks
    assert not hooks.has("task_retry")
    assert app.hooks["worker_start"] == [start]


def test_tasks_whose_time_limit_exceeds_the_consumer_timeout_are_found() -> None:
    app = App("t")

    @app.task(time_limit=3600)
    def long() -> None: ...

    @app.task(soft_time_limit=10)
    def short() -> None: ...

    @app.task
    def unlimited() -> None: ...

    assert tasks_over(app.registry, 1800) == [(f"{__name__}.long", 3600)]
    match = _SETTING.search("# comment\nconsumer_timeout = 7200000\n")
    assert match is not None
    assert match.group(1) == "7200000"


def test_revocation_records_round_trip() -> None:
    message = revocation_message(["a", "b", "a", ""], terminate=True, prefix="acme", by="me")
    assert message.routing_key == "acme.revoked"
    assert message.exchange == ""
    record = RevocationRecord.model_validate_json(message.body)
    assert record.ids == ("a", "b")
    assert record.terminate
    assert record.at <= datetime.now(UTC)
