"""The fast ``amqpq worker`` parser agrees with the typer command it stands in for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import amqpq.cli.worker as worker_command
from amqpq.cli import app
from amqpq.cli.worker_args import (
    DEFAULT_MAX_BODY_SIZE,
    FAST_OPTIONS,
    PoolChoice,
    WorkerArgs,
    parse_worker_argv,
)


def typer_parse(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> WorkerArgs | None:
    """What the typer command hands to run_worker for ``amqpq worker ARGV`` (None: refused)."""
    seen: list[WorkerArgs] = []

    def capture(args: WorkerArgs) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(worker_command, "run_worker", capture)
    result = CliRunner().invoke(app, ["worker", *argv])
    if result.exit_code != 0:
        assert not seen
        return None
    assert len(seen) == 1, result.output
    return seen[0]


def test_the_fast_parser_knows_every_option_of_the_typer_command_and_no_other() -> None:
    command: Any = typer.main.get_command(app).get_command(None, "worker")
    typer_flags = {
        flag
        for param in command.params
        for flag in (*param.opts, *param.secondary_opts)
        if flag != "--help"
    }
    fast_flags = {flag for option in FAST_OPTIONS for flag in option.flags}
    assert fast_flags == typer_flags


def test_the_fast_parser_fills_every_field_of_the_worker_settings() -> None:
    assert {option.field for option in FAST_OPTIONS} == set(WorkerArgs.__dataclass_fields__)


def test_the_default_body_size_limit_is_the_workers() -> None:
    from amqpq.worker import DEFAULT_MAX_BODY_SIZE as worker_default

    assert worker_default == DEFAULT_MAX_BODY_SIZE


ACCEPTED = [
    ["-A", "tasks"],
    ["--app", "pkg.mod:app"],
    ["--app=tasks", "--queues=a,b", "--concurrency=3"],
    ["-Atasks", "-Qa,b", "-c4", "-w2", "-lDEBUG"],
    ["-A", "tasks", "-Q", "high,default", "-c", "1", "--pool", "processes"],
    ["-A", "tasks", "--pool", "ASYNC", "-c", "100"],
    ["-A", "tasks", "--pool=Threads"],
    ["-A", "tasks", "--pool", "solo", "-w", "2"],
    ["-A", "tasks", "--processes", "4", "--grace", "2.5", "--no-declare"],
    ["-A", "tasks", "-f", "conf/amqpq.yaml", "--url", "amqp://u:p@h:5672/v"],
    ["-A", "tasks", "--topology", "x.yaml", "--loglevel", "warning"],
    ["-A", "tasks", "--max-body-size", "10MiB", "--workers", "3"],
    ["-A", "tasks", "-E"],
    ["-A", "tasks", "--events", "--no-events"],
    ["-A", "tasks", "--no-events", "--events"],
    ["-A", "tasks", "--metrics-port", "9100", "--grace", "0", "--grace", ".5"],
    ["-A", "first", "-A", "second", "-c", "2", "-c", "5"],
    ["-c", "2", "-A", "tasks", "--metrics-port", "65535", "--grace=10."],
]


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_a_command_line_the_fast_parser_accepts_gives_what_typer_gives(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = parse_worker_argv(argv)
    assert fast is not None
    assert fast == typer_parse(argv, monkeypatch)


def test_the_fast_parser_returns_typed_values() -> None:
    args = parse_worker_argv(["-A", "t", "--pool", "ASYNC", "-f", "a.yaml", "--grace", "1"])
    assert args == WorkerArgs(
        app_spec="t", pool=PoolChoice.async_, topology=Path("a.yaml"), grace=1.0
    )


LEFT_TO_TYPER = [
    [],
    ["--help"],
    ["-A", "tasks", "--help"],
    ["-h"],
    ["-A", "tasks", "--bogus"],
    ["-A", "tasks", "extra"],
    ["-A", "tasks", "--"],
    ["-A"],
    ["-A", "tasks", "-c", "0"],
    ["-A", "tasks", "-c", "-1"],
    ["-A", "tasks", "-c", "two"],
    ["-A", "tasks", "-c=2"],
    ["-A", "tasks", "--pool", "greenlets"],
    ["-A", "tasks", "--grace", "-1"],
    ["-A", "tasks", "--grace", "1e3"],
    ["-A", "tasks", "--metrics-port", "70000"],
    ["-A", "tasks", "--no-declare=yes"],
    ["-A", "tasks", "-Ec", "4"],
    ["-A", ""],
    ["-A", "tasks", "-Q", "-c"],
    ["--conc", "2", "-A", "tasks"],
]


@pytest.mark.parametrize("argv", LEFT_TO_TYPER, ids=lambda a: " ".join(a) or "(nothing)")
def test_the_fast_parser_leaves_anything_unusual_to_typer(argv: list[str]) -> None:
    assert parse_worker_argv(argv) is None


def test_amqpq_worker_starts_without_typer_click_or_rich(tmp_path: Path) -> None:
    # Given a command line the fast parser accepts (the module does not exist: it stops early)
    code = (
        "import sys\n"
        "sys.argv = ['amqpq', 'worker', '-A', 'no_such_module_here']\n"
        "from amqpq.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    print(exc.code, sorted(m for m in ('typer', 'click', 'rich') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    # Then it exits with the usage error code, having imported rich only to print the error
    assert result.stdout.strip() == "2 ['rich']", result.stderr
    assert "no module named 'no_such_module_here'" in result.stderr
