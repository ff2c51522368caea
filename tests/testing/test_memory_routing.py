"""The in-memory broker routes as RabbitMQ does (test_testing_vs_rabbitmq.py checks the same
scenarios against the real broker)."""

from __future__ import annotations

from typing import Any

import pytest

from amqpq.app import App
from amqpq.errors import UnroutableError
from amqpq.testing import TestBroker
from tests.testing.testing_helpers import SCENARIOS, TASK_SENDS, args_for


@pytest.mark.parametrize(
    ("exchange", "routing_key", "headers", "expected"),
    [pytest.param(*s[1:], id=s[0]) for s in SCENARIOS],
)
def test_a_raw_publish_reaches_the_queues_rabbitmq_would(
    broker: TestBroker, exchange: str, routing_key: str, headers: dict[str, Any], expected: set[str]
) -> None:
    if not expected:
        with pytest.raises(UnroutableError):
            broker.publish(b"{}", exchange=exchange, routing_key=routing_key, headers=headers)
        return

    reached = broker.publish(b"{}", exchange=exchange, routing_key=routing_key, headers=headers)

    assert reached == expected
    for queue in expected:
        assert broker.queue(queue).count == 1


@pytest.mark.parametrize(
    ("task", "options", "expected"),
    [pytest.param(*s, id=f"{s[0]}-{i}") for i, s in enumerate(TASK_SENDS)],
)
def test_a_sent_task_lands_where_its_route_sends_it(
    app: App, broker: TestBroker, task: str, options: dict[str, Any], expected: set[str]
) -> None:
    app.send_task(task, args_for(task), **options)

    holding = {q for q in broker.memory.queues if broker.queue(q).count}
    assert holding == expected
    assert broker.sent[-1].queues == expected
    for queue in expected:
        assert broker.queue(queue).tasks[0].task == task


def test_a_task_whose_route_reaches_no_queue_raises_unroutable(
    app: App, broker: TestBroker
) -> None:
    with pytest.raises(UnroutableError, match="would reach no queue"):
        app.registry.get("tests.nowhere").delay()
    assert broker.sent == []


def test_an_exchange_that_does_not_exist_is_unroutable(broker: TestBroker) -> None:
    with pytest.raises(UnroutableError, match="does not exist"):
        broker.publish(b"{}", exchange="no-such-exchange", routing_key="x")


def test_routing_can_be_asked_without_publishing(broker: TestBroker) -> None:
    assert broker.route("events", "user.signup") == {"signups", "audit_a"}
    assert broker.route("ingress", "anything") == {"lost_and_found"}
    assert broker.route("tasks", "nobody") == set()


def test_the_producers_are_given_back_when_the_broker_closes(app: App) -> None:
    with TestBroker(app) as broker:
        assert app.producer is broker.producer  # type: ignore[comparison-overlap]
    assert app.producer is not broker.producer  # type: ignore[comparison-overlap]
    app.close()


def test_a_priority_queue_delivers_the_highest_priority_first(app: App) -> None:
    from amqpq.codec import MessageProperties, OutgoingMessage
    from amqpq.topology.models import Topology
    from amqpq.transport.memory import MemoryBroker

    memory = MemoryBroker(Topology.model_validate({"queues": [{"name": "q", "max_priority": 5}]}))
    for priority in (1, 9, 3):
        memory.publish(
            OutgoingMessage(
                body=str(priority).encode(),
                properties=MessageProperties(priority=priority),
                exchange="",
                routing_key="q",
            )
        )
    bodies = []
    while (item := memory.next_ready(["q"])) is not None:
        bodies.append(item[1].body)
    assert bodies == [b"9", b"3", b"1"]


def test_a_full_reject_publish_queue_refuses_and_a_drop_head_one_dead_letters() -> None:
    from amqpq.codec import MessageProperties, OutgoingMessage
    from amqpq.errors import PublishNackedError
    from amqpq.topology.models import Topology
    from amqpq.transport.memory import MemoryBroker

    memory = MemoryBroker(
        Topology.model_validate(
            {
                "queues": [
                    {"name": "strict", "max_length": 1, "overflow": "reject-publish"},
                    {"name": "rolling", "max_length": 1},
                ]
            }
        )
    )

    def send(queue: str) -> None:
        memory.publish(OutgoingMessage(b"{}", MessageProperties(), "", queue))

    send("strict")
    with pytest.raises(PublishNackedError):
        send("strict")
    send("rolling")
    send("rolling")
    assert len(memory.queue("rolling").ready) == 1
    assert memory.queue("rolling.dlq").ready[0].headers["x-death"][0]["reason"] == "maxlen"
