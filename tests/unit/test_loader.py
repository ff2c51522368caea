"""``-A module``: a user's module that fails to import is one line naming where and why."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from amqpq.errors import ConfigError
from amqpq.worker.loader import load_app

BROKEN = {
    "a_missing_package": (
        "from amqpq import App\napp = App('x')\nimport not_installed_package_xyz\n",
        "line 3): ModuleNotFoundError: No module named 'not_installed_package_xyz'",
    ),
    "a_syntax_error": ("def f(:\n    pass\n", "line 1): SyntaxError: invalid syntax"),
    "an_error_raised_at_import": (
        "from amqpq import App\napp = App('x')\n\nraise RuntimeError('boom at import')\n",
        "line 4): RuntimeError: boom at import",
    ),
}


def _module(tmp_path: Path, source: str) -> str:
    name = f"user_tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(source)
    return name


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_module_that_fails_to_import_is_one_line_with_its_file_and_line(
    tmp_path: Path, case: str
) -> None:
    source, expected = BROKEN[case]
    name = _module(tmp_path, source)

    with pytest.raises(ConfigError) as caught:
        load_app(name, cwd=str(tmp_path))

    message = str(caught.value)
    assert message.startswith(f"cannot import module {name!r} ({tmp_path / name}.py, ")
    assert expected in message
    assert "--loglevel debug" in message
    assert "\n" not in message


def test_the_worker_prints_that_line_and_the_traceback_only_at_debug_level(
    tmp_path: Path,
) -> None:
    name = _module(tmp_path, BROKEN["an_error_raised_at_import"][0])

    def worker(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "amqpq", "worker", "-A", name, *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    quiet = worker()
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [
        f"error: cannot import module {name!r} ({tmp_path / name}.py, line 4): RuntimeError: "
        "boom at import (--loglevel debug shows the traceback)"
    ]
    loud = worker("--loglevel", "debug")
    assert loud.returncode == 2
    assert "Traceback (most recent call last)" in loud.stderr
    assert "boom at import" in loud.stderr
