"""How ``amqpq status`` tells the beats' roles from the management API's answers (no broker)."""

from __future__ import annotations

from typing import Any, Self

import pytest

from amqpq.cli import status as status_module
from amqpq.cli.status import collect_status
from amqpq.settings import Settings
from amqpq.topology.models import Topology
from amqpq.transport.management import ManagementClient

TOPOLOGY = Topology.model_validate(
    {
        "exchanges": [{"name": "tasks", "type": "direct"}],
        "queues": [{"name": "work", "bindings": [{"exchange": "tasks", "routing_key": "work"}]}],
        "routes": {"*": {"exchange": "tasks", "routing_key": "work"}},
        "schedules": {"tick": {"task": "t.tick", "interval": 1}},
    }
)


def connection(name: str, peer_port: int) -> dict[str, Any]:
    return {
        "name": f"127.0.0.1:{peer_port} -> 127.0.0.1:5672",
        "client_properties": {"connection_name": name},
        "peer_host": "127.0.0.1",
        "peer_port": peer_port,
        "state": "running",
        "connected_at": 1_700_000_000_000,
        "channels": 2,
    }


def consumer(peer_port: int, queue: str, tag: str, **fields: Any) -> dict[str, Any]:
    return {
        "channel_details": {"connection_name": f"127.0.0.1:{peer_port} -> 127.0.0.1:5672"},
        "queue": {"name": queue},
        "consumer_tag": tag,
        "prefetch_count": 100,
        **fields,
    }


class FakeManagement:
    def __init__(self, connections: list[dict[str, Any]], consumers: list[dict[str, Any]]) -> None:
        self.connections = connections
        self.consumers = consumers

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def list_queues(self, vhost: str) -> list[dict[str, Any]]:
        return []

    def list_connections(self, vhost: str | None = None) -> list[dict[str, Any]]:
        return self.connections

    def list_consumers(self, vhost: str) -> list[dict[str, Any]]:
        return self.consumers


def beats_with(
    monkeypatch: pytest.MonkeyPatch,
    connections: list[dict[str, Any]],
    consumers: list[dict[str, Any]],
) -> dict[str, Any]:
    fake = FakeManagement(connections, consumers)
    monkeypatch.setattr(ManagementClient, "from_settings", classmethod(lambda cls, s: fake))
    return collect_status(Settings(url="amqp://guest:guest@127.0.0.1:5672/"), TOPOLOGY)


def test_the_active_consumer_leads_the_waiting_one_stands_by_and_one_without_is_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = beats_with(
        monkeypatch,
        [
            connection("amqpq beat b:3", 1003),
            connection("amqpq beat a:2", 1002),
            connection("amqpq beat c:1", 1001),
            connection("amqpq worker w:9", 1009),
        ],
        [
            consumer(1001, "amqpq.beat.leader", "amqpq-beat.c.1", active=True),
            consumer(1002, "amqpq.beat.leader", "amqpq-beat.a.2", active=False),
            consumer(1009, "work", "amqpq-worker.w.9.work"),
        ],
    )

    assert [(b["name"], b["role"], b["consumer_tag"]) for b in document["beats"]] == [
        ("amqpq beat c:1", "leader", "amqpq-beat.c.1"),
        ("amqpq beat a:2", "standby", "amqpq-beat.a.2"),
        ("amqpq beat b:3", "starting", None),
    ]
    assert (document["beats"][0]["host"], document["beats"][0]["pid"]) == ("c", 1)
    assert [w["name"] for w in document["workers"]] == ["amqpq worker w:9"]
    assert document["workers"][0]["consumers"][0]["queue"] == "work"
    assert document["schedules"] == 1


def test_without_the_active_flag_the_activity_status_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = beats_with(
        monkeypatch,
        [connection("amqpq beat a:1", 1001), connection("amqpq beat b:2", 1002)],
        [
            consumer(1001, "amqpq.beat.leader", "t1", activity_status="waiting"),
            consumer(1002, "amqpq.beat.leader", "t2", activity_status="single_active"),
        ],
    )

    assert {b["name"]: b["role"] for b in document["beats"]} == {
        "amqpq beat b:2": "leader",
        "amqpq beat a:1": "standby",
    }


def test_beats_that_do_not_lead_yet_are_flagged_in_the_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    document = beats_with(monkeypatch, [connection("amqpq beat a:1", 1001)], [])
    console = Console(width=120, record=True)
    console.print(status_module._render(document))

    text = console.export_text()
    assert "beats (1, leader on amqpq.beat.leader)" in text
    assert "starting" in text
    assert "no beat leads yet: the schedules are not being sent" in text
