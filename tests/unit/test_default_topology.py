"""Without a topology file, App and the commands use one built-in default."""

from __future__ import annotations

from pathlib import Path

import pytest

from amqpq.app import App
from amqpq.errors import TopologyError
from amqpq.settings import Settings
from amqpq.topology.loader import DEFAULT_SOURCE, resolve_topology
from tests.support.cli import Cli


def test_no_file_anywhere_gives_the_built_in_default(tmp_path: Path) -> None:
    source, topology = resolve_topology(None, tmp_path / "amqpq.yaml")
    assert source == DEFAULT_SOURCE
    assert topology.route_for("anything.at_all").exchange == "amqpq.tasks"
    assert [q.name for q in topology.queues] == ["default"]


def test_a_present_amqpq_yaml_wins_over_the_default(tmp_path: Path) -> None:
    path = tmp_path / "amqpq.yaml"
    path.write_text(
        "exchanges: [{name: jobs, type: direct}]\n"
        "queues: [{name: q, bindings: [{exchange: jobs, routing_key: q}]}]\n"
        "routes: {'*': {exchange: jobs, routing_key: q}}\n"
    )
    source, topology = resolve_topology(None, path)
    assert source == str(path)
    assert topology.route_for("x").exchange == "jobs"


def test_a_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="topology file not found"):
        resolve_topology(tmp_path / "missing.yaml")


def test_an_app_without_a_file_routes_everything_to_the_default_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMQPQ_TOPOLOGY", raising=False)
    app = App("tasks", settings=Settings())
    assert app.topology.route_for("tasks.add").routing_key == "default"


def test_validate_without_a_file_says_it_uses_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMQPQ_TOPOLOGY", raising=False)
    result = Cli()("topology", "validate")
    assert result.exit_code == 0, result.output
    assert "built-in default topology" in result.output
