"""Task signatures: validation from type hints, JSON on the wire, typed values in the task."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from amqpq.errors import ArgumentsError, ConfigError, TaskNotFoundError
from amqpq.registry import (
    Task,
    TaskOptions,
    TaskParameters,
    TaskRegistry,
    TaskSender,
    parse_rate_limit,
)


class Invoice(BaseModel):
    number: int
    issued: datetime


def add(x: int, y: int) -> int:
    return x + y


def report(invoice: Invoice, *tags: str, urgent: bool = False, **extra: float) -> dict[str, Any]:
    return {}


def test_arguments_are_validated_and_kept_positional_or_keyword_as_given() -> None:
    sig = TaskParameters(add)
    assert sig.to_wire([3], {"y": "4"}) == ([3], {"y": 4})


def test_wrong_arity_is_an_arguments_error_naming_the_task() -> None:
    with pytest.raises(ArgumentsError, match="add: missing a required argument: 'y'"):
        TaskParameters(add).to_wire([3], {})


def test_a_value_that_fails_its_type_hint_says_which_parameter_and_what_it_got() -> None:
    with pytest.raises(ArgumentsError, match=r"y: .*integer.*got 'four'"):
        TaskParameters(add).to_wire([3, "four"], {})


def test_models_and_datetimes_travel_as_json_and_come_back_typed() -> None:
    sig = TaskParameters(report)
    issued = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    args, kwargs = sig.to_wire(
        [{"number": 7, "issued": issued}, "a", "b"], {"urgent": 1, "w": "1.5"}
    )
    assert args == [{"number": 7, "issued": "2026-01-02T03:04:05Z"}, "a", "b"]
    assert kwargs == {"urgent": True, "w": 1.5}
    typed_args, typed_kwargs = sig.from_wire(args, kwargs)
    assert typed_args[0] == Invoice(number=7, issued=issued)
    assert typed_kwargs == {"urgent": True, "w": 1.5}


def test_var_positional_items_are_each_validated() -> None:
    with pytest.raises(ArgumentsError, match=r"tags\[2\]"):
        TaskParameters(report).to_wire(
            [{"number": 1, "issued": "2026-01-01T00:00:00Z"}, "a", [1]], {}
        )


def test_bound_tasks_skip_their_first_parameter() -> None:
    def bound(self: object, x: int) -> int:
        return x

    assert TaskParameters(bound, bind=True).to_wire([1], {}) == ([1], {})
    with pytest.raises(ConfigError):
        TaskParameters(lambda: None, bind=True)


def test_results_are_dumped_by_the_return_hint() -> None:
    def issued() -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    sig = TaskParameters(issued)
    wire = sig.result_to_wire(issued())
    assert wire == "2026-01-01T00:00:00Z"
    assert sig.result_from_wire(wire) == issued()


def test_unannotated_parameters_accept_any_json() -> None:
    def loose(a, b=2):  # type: ignore[no-untyped-def]
        return a

    assert TaskParameters(loose).to_wire([{"k": [1]}], {"b": None}) == ([{"k": [1]}], {"b": None})


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("10/s", 10.0), ("120/m", 2.0), ("3600/h", 1.0), ("5", 5.0), ("0.5/s", 0.5)],
)
def test_rate_limits_parse_to_tasks_per_second(text: str, per_second: float) -> None:
    assert parse_rate_limit(text) == per_second


@pytest.mark.parametrize("text", ["fast", "10/day", "0/s", "-1/s"])
def test_bad_rate_limits_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="rate limit"):
        parse_rate_limit(text)


def test_the_registry_refuses_two_functions_under_one_name() -> None:
    registry = TaskRegistry()
    registry.add(Task(add, TaskOptions(name="t.add"), sender=None))  # type: ignore[arg-type]
    registry.add(Task(add, TaskOptions(name="t.add"), sender=None))  # type: ignore[arg-type]  # same function: fine
    with pytest.raises(ConfigError, match=r"two tasks are named 't\.add'"):
        registry.add(Task(report, TaskOptions(name="t.add"), sender=None))  # type: ignore[arg-type]
    with pytest.raises(TaskNotFoundError, match="no task named 'nope'"):
        registry.get("nope")
    assert registry.names() == ["t.add"]


def test_task_options_are_checked_when_declared() -> None:
    with pytest.raises(ConfigError, match="max_retries"):
        TaskOptions(name="x", max_retries=-1)
    with pytest.raises(ConfigError, match="time limits"):
        TaskOptions(name="x", time_limit=0)


class _RecordingProducer:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def send_task(self, name: str, args: Any = (), kwargs: Any = None, **options: Any) -> Any:
        self.calls.append((name, tuple(args), kwargs, options))
        return "sync-result"


class _RecordingAsyncProducer(_RecordingProducer):
    async def send_task(  # type: ignore[override]
        self, name: str, args: Any = (), kwargs: Any = None, **options: Any
    ) -> Any:
        self.calls.append((name, tuple(args), kwargs, options))
        return "async-result"


async def test_a_task_sends_through_the_producers_its_sender_finds_at_send_time() -> None:
    # Given a task whose sender looks its producers up on each send (as the App's does)
    sync, asynchronous = _RecordingProducer(), _RecordingAsyncProducer()
    sender = TaskSender(producer=lambda: sync, aproducer=lambda: asynchronous)

    def add(x: int, y: int) -> int:
        return x + y

    task = Task(add, TaskOptions(name="t.add"), sender)

    # When it is sent in each of its four ways
    assert task.delay(1, 2) == "sync-result"
    assert task.apply_async((3, 4), countdown=5) == "sync-result"
    assert await task.adelay(5, 6) == "async-result"
    assert await task.aapply_async((7, 8), priority=1) == "async-result"

    # Then each went to the producer of its kind, with its options
    assert sync.calls == [("t.add", (1, 2), {}, {}), ("t.add", (3, 4), None, {"countdown": 5})]
    assert asynchronous.calls == [
        ("t.add", (5, 6), {}, {}),
        ("t.add", (7, 8), None, {"priority": 1}),
    ]
