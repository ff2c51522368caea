"""The classic-queue redelivery bound without a broker: the decision and the hook's effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from amqpq.codec import HEADER_REDELIVERIES, MessageProperties, OutgoingMessage, fresh_headers
from amqpq.errors import PublishError
from amqpq.topology.infra import DEAD_LETTER_QUEUE_DELIVERY_LIMIT, effective_topology
from amqpq.topology.models import Topology
from amqpq.worker.redelivery import RedeliveryBound, Verdict, bounded_queues, decide, redeliveries
from amqpq.worker.stats import WorkerStats

TOPOLOGY = {
    "exchanges": [{"name": "x"}],
    "queues": [
        {"name": "c", "bindings": [{"exchange": "x", "routing_key": "c"}]},
        {"name": "q", "type": "quorum", "bindings": [{"exchange": "x", "routing_key": "q"}]},
    ],
}


def test_a_first_delivery_runs() -> None:
    assert decide(redelivered=False, headers={}, limit=2) == Verdict("run", 0)


def test_a_counted_copy_runs_and_keeps_its_count() -> None:
    assert decide(redelivered=False, headers={HEADER_REDELIVERIES: 2}, limit=2) == Verdict("run", 2)


def test_a_redelivery_is_counted_until_the_limit_then_dead_lettered() -> None:
    verdicts = [
        decide(redelivered=True, headers={HEADER_REDELIVERIES: n}, limit=2) for n in (0, 1, 2)
    ]
    assert verdicts == [Verdict("count", 1), Verdict("count", 2), Verdict("dead_letter", 3)]


@pytest.mark.parametrize("value", [None, "3", -1, True, 1.5])
def test_a_missing_or_odd_count_reads_as_zero(value: Any) -> None:
    assert redeliveries({HEADER_REDELIVERIES: value}) == 0


def test_only_classic_queues_are_bounded_with_the_infrastructure_limit() -> None:
    topology = Topology.model_validate({**TOPOLOGY, "infrastructure": {"delivery_limit": 5}})
    assert bounded_queues(topology, ["c", "q"]) == {"c": 5}
    off = Topology.model_validate({**TOPOLOGY, "infrastructure": {"delivery_limit": None}})
    assert bounded_queues(off, ["c", "q"]) == {}


def test_republished_messages_start_a_new_count() -> None:
    assert HEADER_REDELIVERIES not in fresh_headers({HEADER_REDELIVERIES: 3, "a": 1})


def test_quorum_dead_letter_queues_get_a_delivery_limit_out_of_reach() -> None:
    # RabbitMQ 4.x would otherwise give them its default of 20 (and they have no DLX)
    queues = {q.name: q for q in effective_topology(Topology.model_validate(TOPOLOGY)).queues}
    assert queues["q.dlq"].declare_arguments["x-delivery-limit"] == DEAD_LETTER_QUEUE_DELIVERY_LIMIT
    assert "x-delivery-limit" not in queues["c.dlq"].declare_arguments  # classic: refused


# -- the hook, with fakes ------------------------------------------------------------------


@dataclass
class FakeDelivery:
    redelivered: bool
    headers: dict[str, Any] = field(default_factory=dict)
    queue: str = "c"
    body: bytes = b"{}"
    routing_key: str = "c"
    exchange: str = "x"
    settled: str | None = None

    @property
    def properties(self) -> MessageProperties:
        return MessageProperties(message_id="m-1", headers=self.headers)

    async def ack(self) -> bool:
        self.settled = "ack"
        return True


class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[OutgoingMessage] = []
        self.fail = fail

    async def publish(self, message: OutgoingMessage) -> None:
        if self.fail:
            raise PublishError("no")
        self.sent.append(message)


class FakeDeadLetterer:
    def __init__(self) -> None:
        self.letters: list[tuple[str, str]] = []

    async def dead_letter(
        self, delivery: FakeDelivery, reason: str, error_type: str, message: str
    ) -> bool:
        self.letters.append((reason, error_type))
        delivery.settled = "dead-lettered"
        return True


def _bound(publisher: FakePublisher, deadletters: FakeDeadLetterer) -> RedeliveryBound:
    return RedeliveryBound(publisher, deadletters, {"c": 2}, WorkerStats())  # type: ignore[arg-type]


async def test_a_redelivery_is_requeued_as_a_counted_copy_and_the_original_acked() -> None:
    publisher, deadletters = FakePublisher(), FakeDeadLetterer()
    delivery = FakeDelivery(redelivered=True, headers={"amqpq-task": "t"})
    assert await _bound(publisher, deadletters).admit(delivery) is False  # type: ignore[arg-type]
    [copy] = publisher.sent
    assert (copy.exchange, copy.routing_key, copy.mandatory) == ("", "c", True)
    assert copy.properties.headers == {"amqpq-task": "t", HEADER_REDELIVERIES: 1}
    assert delivery.settled == "ack"


async def test_the_copy_runs_as_a_redelivery() -> None:
    delivery = FakeDelivery(redelivered=False, headers={HEADER_REDELIVERIES: 1})
    assert await _bound(FakePublisher(), FakeDeadLetterer()).admit(delivery) is True  # type: ignore[arg-type]
    assert delivery.redelivered is True  # the "already ran here" check and the task see it


async def test_over_the_limit_it_is_dead_lettered_with_reason_delivery_limit() -> None:
    publisher, deadletters = FakePublisher(), FakeDeadLetterer()
    delivery = FakeDelivery(redelivered=True, headers={HEADER_REDELIVERIES: 2})
    assert await _bound(publisher, deadletters).admit(delivery) is False  # type: ignore[arg-type]
    assert deadletters.letters == [("delivery_limit", "DeliveryLimitExceeded")]
    assert publisher.sent == []


async def test_when_the_copy_cannot_be_published_the_delivery_runs_uncounted() -> None:
    delivery = FakeDelivery(redelivered=True)
    bound = _bound(FakePublisher(fail=True), FakeDeadLetterer())
    assert await bound.admit(delivery) is True  # type: ignore[arg-type]
    assert delivery.settled is None


async def test_other_queues_pass_untouched() -> None:
    delivery = FakeDelivery(redelivered=True, queue="q")
    assert await _bound(FakePublisher(), FakeDeadLetterer()).admit(delivery) is True  # type: ignore[arg-type]
    assert delivery.settled is None
