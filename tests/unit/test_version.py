"""``amqpq --version``: one line, the version pyproject.toml declares."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import amqpq

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_version_is_the_one_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert amqpq.__version__ == project["version"]


def test_amqpq_version_prints_one_line_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "amqpq", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"amqpq {amqpq.__version__} (Python {sys.version.split()[0]})"
    ]
    assert done.stderr == ""


def test_the_typer_app_answers_version_the_same_way() -> None:
    from typer.testing import CliRunner

    from amqpq.cli.commands import app
    from amqpq.cli.version import version_line

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == version_line()
