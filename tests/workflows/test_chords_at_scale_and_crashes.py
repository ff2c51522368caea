"""Chords on RabbitMQ alone: a thousand members, and workers SIGKILLed while running a
member and in the middle of the join (the body runs once, each member counted once)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from amqpq import chord
from tests.support.processes import AmqpqProcess
from tests.support.waiting import eventually
from tests.workflows.flows import Flows, traced

pytestmark = pytest.mark.rabbitmq


def chord_queues(management: httpx.Client, vhost: str) -> list[str]:
    queues = management.get(f"/queues/{quote(vhost, safe='')}").json()
    return [q["name"] for q in queues if q["name"].startswith("amqpq.chord.")]


def test_a_chord_of_a_thousand_members_joins_once(
    start_worker: Callable[..., AmqpqProcess],
    flows: Flows,
    traces: Path,
    management: httpx.Client,
    vhost: str,
) -> None:
    start_worker("-c", "4").started_blocking()
    started = time.monotonic()
    c = chord((flows.noop.s(i) for i in range(1000)), flows.collect.s("big")).apply_async()
    assert c.get(timeout=120) == 1000
    elapsed = time.monotonic() - started
    assert traced(traces, "big") == [list(range(1000))]
    assert c.parent.completed_count() == 1000
    assert eventually(lambda: not chord_queues(management, vhost) or None, what="no chord queue")
    print(f"chord of 1000 no-op members: body after {elapsed:.2f}s")


@pytest.mark.slow
def test_sigkill_while_members_run_loses_nothing(
    start_worker: Callable[..., AmqpqProcess], flows: Flows, traces: Path
) -> None:
    # Given a worker running every member of a chord
    first = start_worker("-c", "4").started_blocking()
    c = chord((flows.slow.s(i, 2.0, "member") for i in range(4)), flows.collect.s("body"))
    result = c.apply_async()
    eventually(lambda: len(traced(traces, "member")) >= 4, what="every member running")

    # When it is killed, and another worker starts
    first.signal(signal.SIGKILL)
    first.process.wait(10)
    start_worker("-c", "4").started_blocking()

    # Then the members run again, and the body once, with each member counted once
    assert result.get(timeout=60) == 4
    assert traced(traces, "body") == [[0, 1, 2, 3]]
    assert sorted(traced(traces, "member")) == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.slow
def test_sigkill_in_the_middle_of_the_join_runs_the_body_once(
    start_worker: Callable[..., AmqpqProcess],
    flows: Flows,
    traces: Path,
    management: httpx.Client,
    vhost: str,
) -> None:
    # Given a broker that refuses the body (its queue full, overflow reject-publish): the
    # joiner holds the join and tries again
    first = start_worker("-c", "2").started_blocking()
    policy = f"/policies/{quote(vhost, safe='')}/refuse-bodies"
    management.put(
        policy,
        json={
            "pattern": "^bodies$",
            "definition": {"max-length": 0, "overflow": "reject-publish"},
            "apply-to": "queues",
        },
    ).raise_for_status()
    c = chord((flows.noop.s(i) for i in range(6)), flows.collect.s("body")).apply_async()
    first.wait_for_log_blocking("the join held")

    # When the joiner is killed there, the broker takes bodies again and a worker starts
    first.signal(signal.SIGKILL)
    first.process.wait(10)
    management.delete(policy).raise_for_status()
    start_worker("-c", "2").started_blocking()

    # Then the redelivered member joins again: the body runs once, every member once
    assert c.get(timeout=60) == 6
    assert traced(traces, "body") == [[0, 1, 2, 3, 4, 5]]
    assert eventually(lambda: not chord_queues(management, vhost) or None, what="no chord queue")
    time.sleep(1.0)  # a second body would have run by now
    assert len(traced(traces, "body")) == 1
