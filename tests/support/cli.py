"""The ``amqpq`` command line as tests run it: in-process through typer's runner, or as a
subprocess (for commands that must run beside a worker or need a process of their own)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from amqpq.cli import app


class Cli:
    """``amqpq <prefix> ...`` in-process, with a base environment (``None`` unsets a variable).

    Every run is checked for what a command must never do: print a traceback or end on an
    exception other than its exit.
    """

    def __init__(
        self, env: Mapping[str, str | None] | None = None, prefix: Sequence[str] = ()
    ) -> None:
        self.env = dict(env or {})
        self.prefix = list(prefix)

    def __call__(
        self, *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None
    ) -> Result:
        environment = {**self.env, **(env or {})}
        result = CliRunner().invoke(app, [*self.prefix, *args], env=environment, input=input)
        assert "Traceback" not in result.output, result.output
        assert "Traceback" not in result.stderr, result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        return result

    def json(self, *args: str) -> Any:
        """``... --json``: exit 0 and the parsed document."""
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def run_cli(
    env: dict[str, str] | None, *args: str, cwd: Path | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """``python -m amqpq <args>`` to its end, output captured as text (``env=None``: this process's)."""
    return subprocess.run(
        [sys.executable, "-m", "amqpq", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli_json(env: dict[str, str], *args: str, cwd: Path | None = None) -> Any:
    """``python -m amqpq <args> --json``: exit 0 and the parsed document."""
    done = run_cli(env, *args, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
