"""``amqpq status`` names the topology file its queues come from (or the built-in default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ops.ops_helpers import TOPOLOGY
from tests.support.cli import Cli

pytestmark = pytest.mark.rabbitmq


def test_status_names_the_topology_file_in_its_header_and_json(cli: Cli, declared: object) -> None:
    text = cli("status")
    assert text.exit_code == 0, text.output
    # First, before the queues (a long path may fold onto the next line: never cut)
    assert text.stdout.replace("\n", "").startswith(f"topology: {TOPOLOGY}")
    assert cli.json("status")["topology"] == str(TOPOLOGY)


def test_status_without_a_file_says_it_shows_the_built_in_default(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run from a folder with no amqpq.yaml and no AMQPQ_TOPOLOGY
    monkeypatch.chdir(tmp_path)
    text = cli("status", env={"AMQPQ_TOPOLOGY": None})
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[0].startswith("topology: <built-in default topology>")
