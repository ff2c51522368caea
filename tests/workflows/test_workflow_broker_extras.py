"""Workflows on RabbitMQ beyond the shared cases: the shape in the worker's task events
(for ``amqpq events``, inspect and the dashboard), a chained type error in the dead
letters, a revoked chord, and the asyncio API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pytest

from amqpq import ChordError, TaskRejectedError, chain, chord, group
from amqpq.events import decode_record
from tests.support.cli import Cli
from tests.support.pika_clients import get_message
from tests.support.processes import AmqpqProcess
from tests.support.waiting import eventually
from tests.workflows.conftest import HERE
from tests.workflows.flows import Flows, traced

pytestmark = pytest.mark.rabbitmq


def received_events(url: str) -> list[dict[str, Any]]:
    """Every task.received event in the events stream so far (workers' batches decoded)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=100)
        found = []
        for method, _properties, body in channel.consume(
            "amqpq.events", arguments={"x-stream-offset": "first"}, inactivity_timeout=1
        ):
            if method is None:
                break
            found += [e for e in decode_record(body) if e["type"] == "task.received"]
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
        return found
    finally:
        connection.close()


def test_task_events_carry_the_workflow_shape(
    start_worker: Callable[..., AmqpqProcess], flows: Flows, broker_url: str
) -> None:
    start_worker("-c", "2").started_blocking()  # events are on by default

    c = chord([flows.noop.s(0), flows.noop.s(1)], flows.tsum.s()).apply_async()
    r = chain(flows.add.s(1, 1), flows.mul.s(2)).apply_async()
    assert c.get(timeout=30) == 1
    assert r.get(timeout=30) == 4

    events: list[dict[str, Any]] = []

    def all_five() -> bool:
        events[:] = received_events(broker_url)
        return len(events) >= 5

    eventually(all_five, what="five task.received events")
    by_id = {e["id"]: e for e in events}
    members = [by_id[h.id] for h in c.parent.results]
    assert [(m["chord_id"], m["chord_index"], m["chord_size"]) for m in members] == [
        (c.id, 0, 2),
        (c.id, 1, 2),
    ]
    assert by_id[c.id]["parent_id"] == c.id  # the body: sent by the chord's join
    assert by_id[r.id]["parent_id"] == r.parent.id
    assert by_id[r.id]["root_id"] == r.parent.id
    assert by_id[r.parent.id]["chain_next"] == 1


def test_a_chained_type_error_is_dead_lettered_with_the_reason(
    start_worker: Callable[..., AmqpqProcess], flows: Flows, broker_url: str
) -> None:
    start_worker("-c", "2").started_blocking()
    r = chain(flows.upper.s("x"), flows.add.s(1)).apply_async()
    with pytest.raises(TaskRejectedError):
        r.get(timeout=30)
    _method, properties, body = get_message(broker_url, "default.dlq", timeout=15)
    assert properties.headers["amqpq-dead-letter-reason"] == "bad_arguments"
    assert properties.headers["amqpq-error-type"] == "ArgumentsError"
    assert "x" in properties.headers["amqpq-error-message"]
    assert json.loads(body)["args"] == ["X", 1]


def test_a_revoked_chord_revokes_its_members_and_body(
    start_worker: Callable[..., AmqpqProcess], flows: Flows, traces: Path
) -> None:
    # Given a chord whose members wait in their queue (the worker consumes another one)
    idle = start_worker("-Q", "high_priority").started_blocking()
    c = chord((flows.noop.s(i) for i in range(3)), flows.collect.s("revoked")).apply_async()

    # When it is revoked, then a worker takes the queue
    c.revoke()
    idle.terminate()
    start_worker("-c", "2").started_blocking()

    # Then no member runs, the body never does, and the result says why
    with pytest.raises(ChordError) as caught:
        c.get(timeout=30)
    assert "revoked" in str(caught.value)
    assert all(r.state.value == "REVOKED" for r in c.parent.results)
    assert traced(traces, "revoked") == []


def test_workflows_from_asyncio(start_worker: Callable[..., AmqpqProcess], flows: Flows) -> None:
    start_worker("-c", "2").started_blocking()

    async def main() -> tuple[Any, Any, Any]:
        r = await chain(flows.add.s(1, 2), flows.mul.s(3)).aapply_async()
        g = await group(flows.noop.s(i) for i in range(3)).aapply_async()
        c = await chord([flows.noop.s(1), flows.noop.s(2)], flows.tsum.s()).aapply_async()
        return await r.aget(timeout=30), await g.aget(timeout=30), await c.aget(timeout=30)

    assert asyncio.run(main()) == (9, [0, 1, 2], 3)


def test_workflows_on_the_processes_pool(
    start_worker: Callable[..., AmqpqProcess], flows: Flows
) -> None:
    start_worker("--processes", "2").started_blocking()
    c = chord((flows.add.s(i, i) for i in range(20)), flows.tsum.s()).apply_async()
    r = chain(flows.add.s(2, 2), flows.add.s(4), flows.mul.s(10)).apply_async()
    assert c.get(timeout=60) == 380
    assert r.get(timeout=60) == 80


def test_replaying_a_failed_member_completes_its_chord(
    start_worker: Callable[..., AmqpqProcess], flows: Flows, traces: Path, broker_url: str
) -> None:
    # Given a chord whose member 1 fails for good: the caller hears ChordError
    start_worker("-c", "2").started_blocking()
    (traces / "broken").write_text("")
    header = [flows.noop.s(0), flows.unless_broken.s(1), flows.noop.s(2)]
    c = chord(header, flows.collect.s("replayed")).apply_async()
    with pytest.raises(ChordError, match="member 1"):
        c.get(timeout=30)
    assert traced(traces, "replayed") == []

    # When the cause is fixed and the dead letter replayed
    (traces / "broken").unlink()
    replay = Cli(env={"AMQPQ_URL": broker_url})(
        "dlq", "replay", "default", "-f", str(HERE / "workflows.yaml")
    )
    assert replay.exit_code == 0, replay.output

    # Then the member joins the chord's queue and the body runs, once
    assert eventually(lambda: traced(traces, "replayed"), 30, what="the body") == [[0, 1, 2]]
