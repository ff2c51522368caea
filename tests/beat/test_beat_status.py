"""``amqpq status`` lists the running beats, which one leads and which stand by."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import Result

from tests.beat.beat_helpers import TOPOLOGY
from tests.support.cli import Cli
from tests.support.processes import AmqpqProcess

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


def status(broker_url: str, *args: str) -> Result:
    cli = Cli(
        {"AMQPQ_URL": broker_url, "AMQPQ_TOPOLOGY": str(TOPOLOGY), "AMQPQ_MANAGEMENT_URL": None}
    )
    result = cli("status", *args)
    assert result.exit_code == 0, result.output
    return result


def beats_of(broker_url: str) -> list[dict[str, Any]]:
    document = json.loads(status(broker_url, "--json").stdout)
    beats: list[dict[str, Any]] = document["beats"]
    return beats


async def wait_for_beats(
    broker_url: str, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Poll ``status --json`` until ``check(beats)`` (the management API may lag a little)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check(beats := beats_of(broker_url)):
        if loop.time() > deadline:
            raise AssertionError(f"status never showed the expected beats: {beats}")
        await asyncio.sleep(0.2)
    return beats


def roles(beats: list[dict[str, Any]]) -> dict[int | None, str]:
    return {b["pid"]: b["role"] for b in beats}


async def test_status_shows_the_leading_beat_and_the_standby_and_follows_a_handover(
    start_beat: Callable[..., AmqpqProcess], broker_url: str
) -> None:
    # Given a leading beat and a second one that started after it
    first = start_beat()
    await first.wait_for_log("leading:")
    second = start_beat()
    await second.wait_for_log("beat started")
    pids = (first.process.pid, second.process.pid)

    # When status is asked
    beats = await wait_for_beats(
        broker_url,
        # A new connection's state comes with the management API's next statistics.
        lambda b: (
            roles(b) == {pids[0]: "leader", pids[1]: "standby"}
            and all(beat["state"] is not None for beat in b)
        ),
    )

    # Then the JSON names each beat's process, connection and consumer on the leader queue
    leader, standby = beats  # the leader comes first
    host = socket.gethostname()
    assert leader["pid"] == pids[0]
    assert leader["name"] == f"amqpq beat {host}:{pids[0]}"
    assert leader["host"] == host
    assert leader["queue"] == "amqpq.beat.leader"
    assert leader["consumer_tag"] == f"amqpq-beat.{host.replace('.', '-')}.{pids[0]}"
    assert leader["state"] == "running"
    assert leader["connected_at"]
    assert standby["name"] == f"amqpq beat {host}:{pids[1]}"
    assert standby["consumer_tag"] == f"amqpq-beat.{host.replace('.', '-')}.{pids[1]}"
    # And beats are not mistaken for workers
    document = json.loads(status(broker_url, "--json").stdout)
    assert document["workers"] == []
    assert document["schedules"] == 2

    # And the text output shows both with their role
    text = status(broker_url).stdout
    assert "beats (2, leader on amqpq.beat.leader)" in text
    lines = {line for line in text.splitlines() if f"{host}:" in line}
    assert any(f"{host}:{pids[0]}" in line and "leader" in line for line in lines), text
    assert any(f"{host}:{pids[1]}" in line and "standby" in line for line in lines), text
    assert "no beat leads yet" not in text

    # When the leader is stopped (by its pid), the standby takes over and status follows
    first.signal(signal.SIGTERM)
    assert await first.wait() == 0
    await second.wait_for_log("leading:")
    await wait_for_beats(broker_url, lambda b: roles(b) == {pids[1]: "leader"})

    # When the last beat stops, status says the schedules are not being sent
    second.signal(signal.SIGTERM)
    assert await second.wait() == 0
    await wait_for_beats(broker_url, lambda b: b == [])
    text = status(broker_url).stdout
    assert "no beat is connected: the schedules are not being sent" in text
