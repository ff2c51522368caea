"""TestBroker runs tasks in-process through the worker's own message handler."""

from __future__ import annotations

from typing import Any

import pytest

from amqpq.app import App
from amqpq.codec import decode_reply
from amqpq.envelope import TaskState
from amqpq.errors import (
    ArgumentsError,
    RemoteTaskError,
    ResultTimeoutError,
    TaskExpiredError,
    TaskRejectedError,
)
from amqpq.registry import Task
from amqpq.testing import TestBroker


def task(app: App, name: str) -> Task[Any, Any]:
    return app.registry.get(name)


def calls(app: App) -> list[Any]:
    return app.calls  # type: ignore[attr-defined, no-any-return]


# -- queued, then run_all ----------------------------------------------------------------------


def test_delay_queues_the_task_and_run_all_runs_it_and_returns_the_result(
    app: App, broker: TestBroker
) -> None:
    add = task(app, "tests.add")

    result = add.delay(3, 4)

    assert broker.queue("default").count == 1
    assert broker.queue("default").tasks[0].task == "tests.add"
    assert broker.queue("default").tasks[0].args == [3, 4]
    assert result.state is TaskState.PENDING
    assert broker.run_all() == 1
    assert result.get() == 7
    assert result.successful()
    assert broker.queue("default").count == 0
    assert broker.stats.succeeded == 1


def test_get_before_the_task_ran_says_how_to_run_it(app: App, broker: TestBroker) -> None:
    result = task(app, "tests.add").delay(1, 2)

    with pytest.raises(ResultTimeoutError, match="run_all"):
        result.get(timeout=10)


def test_a_fanout_task_runs_once_per_queue(app: App, broker: TestBroker) -> None:
    task(app, "tests.audit").delay("login")

    broker.run_all()

    assert calls(app) == [("audit", "login"), ("audit", "login")]


def test_run_all_can_consume_only_some_queues(app: App, broker: TestBroker) -> None:
    task(app, "tests.add").delay(1, 2)
    task(app, "tests.send_email").delay("ada@example.com")

    assert broker.run_all(queues=["high_priority"]) == 1

    assert calls(app) == [("send_email", "ada@example.com")]
    assert broker.queue("default").count == 1


def test_a_failing_task_raises_a_remote_error_and_is_dead_lettered(
    app: App, broker: TestBroker
) -> None:
    result = task(app, "tests.boom").delay()

    broker.run_all()

    with pytest.raises(RemoteTaskError) as caught:
        result.get()
    assert caught.value.type_name == "KeyError"
    assert "missing" in (caught.value.traceback or "")
    [dead] = broker.dead_letters("default")
    assert dead.task == "tests.boom"
    assert dead.reason == "failed"
    assert dead.error_type == "KeyError"


def test_update_state_sends_progress_replies_before_the_result(
    app: App, broker: TestBroker
) -> None:
    replies: list[tuple[TaskState, Any]] = []
    deliver = broker.memory.on_direct_reply
    assert deliver is not None

    def spy(correlation_id: str | None, body: bytes) -> None:
        reply = decode_reply(body)
        replies.append((reply.state, reply.meta))
        deliver(correlation_id, body)

    broker.memory.on_direct_reply = spy
    result = task(app, "tests.progress").delay(2)

    broker.run_all()

    assert replies == [
        (TaskState.PROGRESS, {"step": 0}),
        (TaskState.PROGRESS, {"step": 1}),
        (TaskState.SUCCESS, None),
    ]
    assert result.get() == 2


# -- bad input -----------------------------------------------------------------------------


def test_arguments_are_validated_at_send_time(app: App, broker: TestBroker) -> None:
    with pytest.raises(ArgumentsError, match="valid integer"):
        task(app, "tests.add").delay("three", 4)
    assert broker.queue("default").count == 0


def test_bad_input_from_a_plain_client_is_dead_lettered_with_its_reason(
    broker: TestBroker,
) -> None:
    broker.publish({"id": "t1", "task": "tests.add", "args": ["x", 2]}, queue="default")
    broker.publish({"id": "t2", "task": "tests.unknown"}, queue="default")
    broker.publish(b"not json", queue="default")

    broker.run_all()

    dead = broker.dead_letters("default")
    assert [d.reason for d in dead] == ["bad_arguments", "unknown_task", "bad_json"]
    assert "valid integer" in (dead[0].error_message or "")
    assert broker.stats.dead_lettered["bad_arguments"] == 1


def test_the_caller_of_a_rejected_task_gets_a_rejected_error(app: App, broker: TestBroker) -> None:
    # Sent by name from an app that does not know the task: validated only at the worker.
    result = app.send_task("tests.unknown_here", [1])

    broker.run_all()

    with pytest.raises(TaskRejectedError, match="no task named"):
        result.get()


# -- time: countdown, eta, expiry, retries -----------------------------------------------------


def test_a_countdown_waits_until_the_clock_is_advanced(app: App, broker: TestBroker) -> None:
    result = task(app, "tests.add").apply_async((1, 2), countdown=3600)

    assert broker.queue("default").count == 0
    assert len(broker.delayed()) == 1
    assert broker.run_all() == 0

    broker.advance(3599)
    assert broker.run_all() == 0
    broker.advance(1.5)
    assert broker.queue("default").count == 1
    assert broker.run_all() == 1
    assert result.get() == 3


def test_a_short_delay_sent_after_a_long_one_is_not_blocked_by_it(
    app: App, broker: TestBroker
) -> None:
    add = task(app, "tests.add")
    late = add.apply_async((1, 1), countdown=600)
    soon = add.apply_async((2, 2), countdown=5)

    broker.advance(6)
    broker.run_all()

    assert soon.get() == 4
    assert late.state is TaskState.PENDING


def test_run_all_with_fast_forward_runs_delayed_tasks_too(app: App, broker: TestBroker) -> None:
    result = task(app, "tests.add").apply_async((5, 5), countdown=86_400)

    broker.run_all(fast_forward=True)

    assert result.get() == 10
    assert broker.now == pytest.approx(86_400, abs=1)


def test_a_task_that_expired_while_waiting_is_not_run(app: App, broker: TestBroker) -> None:
    result = task(app, "tests.add").apply_async((1, 2), expires=60)

    broker.advance(61)
    broker.run_all()

    with pytest.raises(TaskExpiredError):
        result.get()
    assert [d.reason for d in broker.dead_letters("default")] == ["expired"]


def test_retries_back_off_through_the_delay_levels(app: App, broker: TestBroker) -> None:
    result = task(app, "tests.flaky").delay(2)

    broker.run_all()
    assert result.state is TaskState.RETRY
    assert len(broker.delayed()) == 1
    broker.advance(0.9)
    assert broker.run_all() == 0  # the first retry waits 1 s (retry_backoff, no jitter)
    broker.advance(0.2)
    assert broker.run_all() == 1
    assert result.state is TaskState.RETRY
    broker.advance(2.1)  # then 2 s
    broker.run_all()

    assert result.get() == 2
    assert calls(app) == [("flaky", 0), ("flaky", 1), ("flaky", 2)]
    assert broker.stats.retried == 2


def test_exhausted_retries_end_in_the_dead_letter_queue(app: App, broker: TestBroker) -> None:
    result = task(app, "tests.flaky").delay(10)  # max_retries=3

    broker.run_all(fast_forward=True)

    with pytest.raises(RemoteTaskError, match="upstream down"):
        result.get()
    [dead] = broker.dead_letters("default")
    assert dead.reason == "max_retries_exceeded"
    assert dead.envelope is not None
    assert dead.envelope.retries == 3


# -- eager ---------------------------------------------------------------------------------


def test_eager_mode_runs_the_task_at_once(app: App, eager: TestBroker) -> None:
    assert task(app, "tests.add").delay(3, 4).get() == 7
    assert eager.queue("default").count == 0


def test_eager_mode_raises_the_remote_error_as_a_worker_would(app: App, eager: TestBroker) -> None:
    result = task(app, "tests.boom").delay()

    with pytest.raises(RemoteTaskError, match="missing"):
        result.get()


def test_eager_mode_fast_forwards_countdowns_and_retries(app: App, eager: TestBroker) -> None:
    assert task(app, "tests.add").apply_async((1, 1), countdown=3600).get() == 2
    assert task(app, "tests.flaky").delay(2).get() == 2


def test_eager_mode_runs_tasks_sent_by_a_task_inline(app: App, eager: TestBroker) -> None:
    result = task(app, "tests.signup_flow").delay("ada@example.com")

    assert result.get() == "sent to ada@example.com"
    assert ("send_email", "ada@example.com") in calls(app)
    assert calls(app).count(("audit", "signup ada@example.com")) == 2


def test_the_broker_is_no_test_class_for_pytest() -> None:
    assert TestBroker.__test__ is False


# -- async -----------------------------------------------------------------------------------


async def test_the_async_producer_publishes_into_memory(app: App) -> None:
    async with TestBroker(app) as broker:
        result = await task(app, "tests.add").adelay(2, 3)
        assert broker.queue("default").count == 1

        await broker.arun_all()

        assert await result.aget() == 5


async def test_async_eager_mode_runs_async_tasks(app: App) -> None:
    async with TestBroker(app, eager=True):
        result = await task(app, "tests.aadd").adelay(20, 22)
        assert await result.aget() == 42


# -- result queues ---------------------------------------------------------------------------


def test_a_result_queue_holds_the_result_until_collected_by_task_id(
    app: App, broker: TestBroker
) -> None:
    task(app, "tests.add").apply_async((1, 2), task_id="my-id", result_queue="results")

    broker.run_all()

    assert broker.queue("results").count == 1
    assert app.producer.result_from_queue("my-id", "results").get() == 3
    assert broker.queue("results").count == 0


# -- rate limits: not modelled (docs/testing.md) -----------------------------------------------


def test_rate_limits_are_not_applied_tasks_run_back_to_back_and_the_clock_stays(
    app: App, broker: TestBroker
) -> None:
    # Given a task limited to one a minute
    @app.task(name="tests.throttled", rate_limit="1/m")
    def throttled(n: int) -> int:
        return n

    # Then its limit is readable from the task (what a unit test can check)
    assert throttled.options.rate_limit == "1/m"
    assert throttled.options.rate_per_second == pytest.approx(1 / 60)

    # When three are sent and run
    started = broker.now
    results = [throttled.delay(n) for n in range(3)]
    assert broker.run_all() == 3

    # Then all three ran at once and virtual time did not move (a worker would space them)
    assert [r.get() for r in results] == [0, 1, 2]
    assert broker.now == started


def test_rate_limits_are_not_applied_in_eager_mode_either(app: App) -> None:
    @app.task(name="tests.throttled", rate_limit="1/h")
    def throttled(n: int) -> int:
        return n * 2

    with TestBroker(app, eager=True) as broker:
        started = broker.now
        assert [throttled.delay(n).get() for n in range(3)] == [0, 2, 4]
        assert broker.now == started


# -- one send path: the real producers over the memory transport -------------------------------


def test_the_broker_sends_with_the_apps_real_producers(app: App, broker: TestBroker) -> None:
    from amqpq.producer import AsyncProducer, Producer

    assert type(app.producer) is Producer
    assert type(broker.aproducer) is AsyncProducer


def test_publish_hooks_run_under_the_test_broker_and_can_add_headers(
    app: App, broker: TestBroker
) -> None:
    # Given publish hooks, one of them adding a header
    seen: list[tuple[str, str, str]] = []

    @app.before_publish
    def stamp(envelope: Any, exchange: str, routing_key: str, headers: dict[str, Any]) -> None:
        headers["x-tenant"] = "acme"
        seen.append(("before", envelope.task, routing_key))

    @app.after_publish
    def confirmed(envelope: Any, exchange: str, routing_key: str, result: Any) -> None:
        seen.append(("after", envelope.task, result.id))

    # When a task is sent
    result = task(app, "tests.add").delay(1, 2)

    # Then both hooks ran, in order, and the header travelled with the message
    assert seen == [("before", "tests.add", "default"), ("after", "tests.add", result.id)]
    assert broker.queue("default").messages[0].headers["x-tenant"] == "acme"


async def test_publish_hooks_run_for_the_async_producer_too(app: App) -> None:
    seen: list[str] = []
    app.after_publish(lambda **kw: seen.append(kw["envelope"].task))

    async with TestBroker(app):
        await task(app, "tests.add").adelay(1, 2)

    assert seen == ["tests.add"]


def test_a_task_sent_event_is_published_when_events_are_on(
    app: App, broker: TestBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given events switched on, and every publish into memory watched
    app.send_events = True
    published: list[Any] = []
    publish = broker.memory.publish

    def watch(message: Any) -> dict[str, int]:
        published.append(message)
        return publish(message)

    monkeypatch.setattr(broker.memory, "publish", watch)

    # When a task is sent
    result = task(app, "tests.add").delay(1, 2)

    # Then a task.sent event went to the events exchange next to it
    [event] = [m for m in published if m.exchange == "amqpq.events"]
    assert event.routing_key == "task.sent.tests.add"
    assert result.id in event.body.decode()
    assert broker.sent[-1].id == result.id  # the event is not a sent task
    assert len(broker.sent) == 1
