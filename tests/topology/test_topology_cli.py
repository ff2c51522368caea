"""``amqpq topology ...``: outputs, exit codes, and one line per error, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import Result

from tests.support.cli import Cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "amqpq.yaml"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AMQPQ_URL", "AMQPQ_TOPOLOGY", "AMQPQ_MANAGEMENT_URL"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return Cli(prefix=["topology"])(*args, env=env)


def test_validate_prints_a_summary() -> None:
    result = run("validate", "-f", str(EXAMPLE))
    assert result.exit_code == 0
    assert result.stdout == (f"ok: {EXAMPLE} (4 exchanges, 5 queues, 5 routes, 1 schedules)\n")


def test_validate_finds_the_file_through_the_environment() -> None:
    result = run("validate", env={"AMQPQ_TOPOLOGY": str(EXAMPLE)})
    assert result.exit_code == 0


def test_validate_reports_each_problem_on_one_line_and_exits_2(
    write_yaml: Callable[..., Path],
) -> None:
    path = write_yaml(
        """
        exchanges: [{name: tasks, type: direkt}]
        queues: [{name: q, tipe: quorum}]
        """
    )
    result = run("validate", "-f", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:1: exchanges[0].type: expected 'direct', 'topic', 'fanout' or "
        "'headers', got 'direkt'",
        f"error: {path}:2: queues[0].tipe: unknown key (did you mean 'type'?); expected one of: "
        "name, type, durable, exclusive, auto_delete, arguments, bindings, max_length, "
        "max_length_bytes, message_ttl, expires, max_priority, delivery_limit, "
        "single_active_consumer, overflow, dead_letter_exchange, dead_letter_routing_key, max_age, "
        "amqpq_arguments",
    ]


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = run("validate", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "topology file not found" in result.stderr


def test_export_prints_importable_definitions() -> None:
    result = run("export", "-f", str(EXAMPLE))
    assert result.exit_code == 0
    definitions = json.loads(result.stdout)
    assert {q["name"] for q in definitions["queues"]} >= {"default", "pdf", "default.dlq"}


def test_graph_prints_mermaid_or_dot(tmp_path: Path) -> None:
    assert run("graph", "-f", str(EXAMPLE)).stdout.startswith("flowchart LR")
    out = tmp_path / "topology.dot"
    result = run("graph", "-f", str(EXAMPLE), "--format", "dot", "-o", str(out))
    assert result.exit_code == 0
    assert out.read_text().startswith("digraph amqpq {")
    bad = run("graph", "-f", str(EXAMPLE), "--format", "svg")
    assert bad.exit_code == 2
    assert bad.stderr == "error: --format must be mermaid or dot, got 'svg'\n"


@pytest.mark.rabbitmq
def test_plan_apply_plan_on_a_fresh_vhost(broker_url: str) -> None:
    before = run("plan", "-f", str(EXAMPLE), "--url", broker_url)
    assert before.exit_code == 0
    lines = before.stdout.splitlines()
    assert "+ exchange tasks (direct)" in lines
    assert "+ binding reports -> queue pdf (x-match=all, format=pdf)" in lines
    assert (
        "+ amqpq infrastructure: 34 exchanges, 38 queues, 75 bindings to create (--all lists them)"
        in lines
    )
    assert lines[-1] == "plan: 161 to create, 0 unchanged, 0 conflicting, 0 only on the broker"

    applied = run("apply", "-f", str(EXAMPLE), "--url", broker_url)
    assert applied.exit_code == 0
    assert applied.stdout.splitlines()[-1].endswith(
        ": 81 created, 0 unchanged, 80 bindings declared"
    )

    after = run("plan", "-f", str(EXAMPLE), "--url", broker_url, "--all")
    assert after.exit_code == 0
    assert after.stdout.splitlines()[-1] == (
        "plan: 0 to create, 161 unchanged, 0 conflicting, 0 only on the broker"
    )
    assert "= queue amqpq.delay.7 (quorum)" in after.stdout


@pytest.mark.rabbitmq
def test_conflicts_exit_5_and_apply_declares_nothing(
    broker_url: str, vhost: str, management: httpx.Client
) -> None:
    vq = vhost.replace("/", "%2F")
    management.put(f"/queues/{vq}/default", json={"durable": True}).raise_for_status()
    plan = run("plan", "-f", str(EXAMPLE), "--url", broker_url)
    assert plan.exit_code == 5
    assert "! queue default (quorum): type: file quorum, broker classic" in plan.stdout

    apply = run("apply", "-f", str(EXAMPLE), "--url", broker_url)
    assert apply.exit_code == 5
    assert apply.stderr.splitlines()[0].startswith(
        "conflict: queue default (quorum): type: file quorum, broker classic"
    )
    assert "nothing was declared" in apply.stderr.splitlines()[-1]
    assert [q["name"] for q in management.get(f"/queues/{vq}").json()] == ["default"]


@pytest.mark.rabbitmq
def test_apply_without_management_api_still_refuses_conflicts(
    broker_url: str, vhost: str, management: httpx.Client
) -> None:
    vq = vhost.replace("/", "%2F")
    management.put(f"/queues/{vq}/default", json={"durable": True}).raise_for_status()
    env = {"AMQPQ_MANAGEMENT_URL": "http://127.0.0.1:1"}
    result = run("apply", "-f", str(EXAMPLE), "--url", broker_url, env=env)
    assert result.exit_code == 5
    lines = result.stderr.splitlines()
    assert lines[0].startswith("warning: management API at http://127.0.0.1:1 did not answer")
    assert lines[1].startswith("error: queue 'default': inequivalent arg ")
    assert lines[1].endswith("; nothing was declared")
    assert [q["name"] for q in management.get(f"/queues/{vq}").json()] == ["default"]


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["apply", "--url", "amqp://guest:guest@127.0.0.1:1/"],
            {"AMQPQ_MANAGEMENT_URL": "http://127.0.0.1:1"},
            "error: cannot connect to RabbitMQ: amqp://guest@127.0.0.1:1/%2F: connection refused",
        ),
        (
            ["plan", "--url", "amqp://guest:wrong@127.0.0.1/"],
            None,
            "error: management API at http://127.0.0.1:15672 refused the credentials for user "
            "'guest'",
        ),
        (
            ["plan", "--url", "amqp://guest:guest@127.0.0.1/"],
            {"AMQPQ_MANAGEMENT_URL": "http://127.0.0.1:1"},
            "error: management API at http://127.0.0.1:1 did not answer: connection refused — "
            "is the rabbitmq_management plugin enabled?",
        ),
        (
            ["apply", "--url", "amqp://guest:guest@127.0.0.1/amqpq-no-such-vhost"],
            {"AMQPQ_MANAGEMENT_URL": "http://127.0.0.1:1"},
            "error: cannot connect to RabbitMQ: amqp://guest@127.0.0.1:5672/"
            "amqpq-no-such-vhost: vhost 'amqpq-no-such-vhost' does not exist or user 'guest' "
            "may not use it",
        ),
    ],
)
def test_broker_problems_are_one_line_and_exit_3(
    args: list[str], env: dict[str, str] | None, message: str
) -> None:
    result = run(*args, "-f", str(EXAMPLE), env=env)
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1] == message
