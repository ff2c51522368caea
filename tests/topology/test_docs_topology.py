"""docs/topology.md shows what ``plan`` and ``apply`` print for examples/amqpq.yaml: checked
here against a fresh vhost, so the figures in the doc follow the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amqpq.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "examples/amqpq.yaml"

pytestmark = pytest.mark.rabbitmq


def _doc_block(command: str) -> list[str]:
    """The lines the doc shows after each ``$ <command>``, up to the end of its code block."""
    lines = (ROOT / "docs" / "topology.md").read_text().splitlines()
    shown: list[str] = []
    for start, line in enumerate(lines):
        if line == f"$ {command}":
            shown += lines[start + 1 : lines.index("```", start)]
    return shown


def _run(*args: str) -> list[str]:
    result = CliRunner().invoke(app, ["topology", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_the_plan_and_apply_figures_in_the_docs_are_what_the_example_prints(
    broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("AMQPQ_TOPOLOGY", raising=False)

    plan = _run("plan", "-f", EXAMPLE, "--url", broker_url)
    assert plan == _doc_block(f"amqpq topology plan -f {EXAMPLE}")

    applied = _run("apply", "-f", EXAMPLE, "--url", broker_url)[-1]
    shown = [line for line in _doc_block(f"amqpq topology apply -f {EXAMPLE}") if "applied" in line]
    counts = re.compile(r": (\d+ created, \d+ unchanged, \d+ bindings declared)$")
    assert [counts.search(line).group(1) for line in shown] == [  # type: ignore[union-attr]
        counts.search(applied).group(1)  # type: ignore[union-attr]
    ]
