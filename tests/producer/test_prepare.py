"""Preparing a task is pure: options, routing, the static route check and delays."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from amqpq.app import App
from amqpq.delay import HEADER_DELAY_EXCHANGE, bit_header
from amqpq.errors import ArgumentsError, ConfigError, UnroutableError
from amqpq.producer import TaskPreparer
from amqpq.rpc import DIRECT_REPLY_TO
from amqpq.settings import Settings
from amqpq.topology.models import Topology
from tests.producer.producer_helpers import TOPOLOGY


@pytest.fixture
def preparer() -> TaskPreparer:
    app = App("tests", settings=Settings(), topology=Topology.model_validate(TOPOLOGY))

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.quiet", ignore_result=True, priority=3, expires=60)
    def quiet() -> None:
        return None

    @app.task(name="tasks.when")
    def when(at: datetime) -> None:
        return None

    return app.send_context.preparer


def test_a_known_task_is_validated_and_routed_by_the_default_route(
    preparer: TaskPreparer,
) -> None:
    prepared = preparer.prepare("tasks.add", ("3", 4))
    assert prepared.envelope.args == [3, 4]
    assert prepared.message.exchange == "tasks"
    assert prepared.message.routing_key == "default"
    assert prepared.message.properties.reply_to == DIRECT_REPLY_TO
    assert prepared.message.properties.delivery_mode == 2
    assert prepared.targets == {"default"}
    assert json.loads(prepared.message.body)["task"] == "tasks.add"


def test_arguments_become_json_on_the_way_out(preparer: TaskPreparer) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    prepared = preparer.prepare("tasks.when", (at,))
    assert json.loads(prepared.message.body)["args"] == ["2030-01-02T03:04:05Z"]


def test_invalid_arguments_of_a_known_task_are_refused(preparer: TaskPreparer) -> None:
    with pytest.raises(ArgumentsError, match="x"):
        preparer.prepare("tasks.add", ("three", 4))
    with pytest.raises(ArgumentsError, match="args must be a list"):
        preparer.prepare("tasks.add", "34")


def test_an_unknown_task_is_sent_by_name_without_validation(preparer: TaskPreparer) -> None:
    prepared = preparer.prepare("reports.monthly", ("anything", {"a": 1}))
    assert prepared.task is None
    assert prepared.message.exchange == "reports"
    assert prepared.message.properties.headers["format"] == "pdf"
    assert prepared.targets == {"pdf"}


def test_call_options_override_the_route(preparer: TaskPreparer) -> None:
    prepared = preparer.prepare(
        "tasks.add", (1, 2), options={"routing_key": "high", "headers": {"x": "1"}}
    )
    assert (prepared.message.exchange, prepared.message.routing_key) == ("tasks", "high")
    assert prepared.message.properties.headers["x"] == "1"
    assert preparer.prepare(
        "tasks.add", (1, 2), options={"exchange": "orphan", "routing_key": "k"}
    ).targets == {"orphaned"}


def test_a_route_to_nowhere_is_refused_before_publishing(preparer: TaskPreparer) -> None:
    with pytest.raises(UnroutableError, match="no-such-key"):
        preparer.prepare("tasks.nowhere")
    with pytest.raises(UnroutableError):
        preparer.prepare("tasks.add", (1, 2), options={"routing_key": "nope"})


def test_task_defaults_and_result_options(preparer: TaskPreparer) -> None:
    quiet = preparer.prepare("tasks.quiet")
    assert quiet.reply_to is None
    assert quiet.message.properties.reply_to is None
    assert quiet.message.properties.priority == 3
    assert quiet.envelope.expires is not None
    queued = preparer.prepare("tasks.add", (1, 2), options={"result_queue": "results.billing"})
    assert queued.message.properties.reply_to == "results.billing"
    assert queued.result_queue == "results.billing"
    chosen = preparer.prepare("tasks.add", (1, 2), options={"task_id": "mine", "parent_id": "p"})
    assert chosen.envelope.id == chosen.message.properties.message_id == "mine"
    assert chosen.envelope.parent_id == "p"


def test_a_countdown_is_published_to_the_delay_levels_with_the_original_key(
    preparer: TaskPreparer,
) -> None:
    prepared = preparer.prepare("tasks.add", (1, 2), options={"countdown": 5})
    headers = prepared.message.properties.headers
    assert prepared.message.exchange == "amqpq.delay.12"
    assert prepared.message.routing_key == "default"
    assert headers[HEADER_DELAY_EXCHANGE] == "tasks"
    assert headers[bit_header(12)] == "1"
    assert headers[bit_header(0)] == "0"
    assert prepared.envelope.eta is not None
    assert 4990 <= prepared.delay_ms <= 5000


def test_a_naive_eta_is_utc_and_a_past_eta_is_sent_directly(preparer: TaskPreparer) -> None:
    naive = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=10)
    prepared = preparer.prepare("tasks.add", (1, 2), options={"eta": naive})
    assert prepared.envelope.eta == naive.replace(tzinfo=UTC)
    assert 9000 < prepared.delay_ms <= 10000
    past = preparer.prepare("tasks.add", (1, 2), options={"eta": "2000-01-01T00:00:00+00:00"})
    assert past.message.exchange == "tasks"
    assert past.delay_ms == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"countdown": 1, "eta": datetime.now(UTC)}, "not both"),
        ({"countdown": -1}, "countdown"),
        ({"eta": "soon"}, "ISO 8601"),
        ({"expires": "later"}, "ISO 8601"),
        ({"priority": 300}, "priority"),
        ({"colour": "red"}, "unknown send option"),
        ({"headers": ["x"]}, "headers must be a mapping"),
        ({"result_queue": ""}, "result_queue"),
    ],
)
def test_bad_options_are_config_errors(
    preparer: TaskPreparer, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        preparer.prepare("tasks.add", (1, 2), options=options)


def test_non_json_arguments_of_an_unknown_task_are_refused(preparer: TaskPreparer) -> None:
    with pytest.raises(ArgumentsError, match="JSON"):
        preparer.prepare("other.task", (object(),))
