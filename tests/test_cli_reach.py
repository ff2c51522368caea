"""``topology plan`` and ``status`` read the management API, and check AMQP as well: a broker
whose AMQP port does not answer is an error (exit 3) naming AMQP, never a clean plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from amqpq.cli import app
from amqpq.errors import ExitCode

pytestmark = pytest.mark.rabbitmq

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "amqpq.yaml"


@pytest.mark.parametrize("command", [["topology", "plan"], ["status"]])
def test_an_unreachable_amqp_port_fails_even_though_the_management_api_answers(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMQPQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
    monkeypatch.delenv("AMQPQ_URL", raising=False)
    result = CliRunner().invoke(
        app, [*command, "-f", str(EXAMPLE), "--url", "amqp://guest:guest@127.0.0.1:1/"]
    )

    assert result.exit_code == ExitCode.BROKER
    assert result.stderr.strip().splitlines() == [
        "error: cannot connect to RabbitMQ: amqp://guest@127.0.0.1:1/%2F: connection refused "
        "(the management API at http://127.0.0.1:15672 answers, but producers, workers and "
        "`topology apply` need AMQP)"
    ]
    assert "plan:" not in result.stdout
