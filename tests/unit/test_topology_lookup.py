"""Which topology file an App reads: topology=, AMQPQ_TOPOLOGY, beside its module, ./amqpq.yaml.

Each case runs a script from a folder other than the project's, as a newcomer's script does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import amqpq_env
from tests.support.scripts import run_script


def _topology(queue: str) -> str:
    return (
        "exchanges: [{name: x, type: direct}]\n"
        f"queues: [{{name: {queue}, bindings: [{{exchange: x, routing_key: k}}]}}]\n"
        "routes: {'*': {exchange: x, routing_key: k}}\n"
    )


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """``proj`` (tasks.py creating the App) and ``elsewhere`` (the script and its cwd)."""
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir()
    elsewhere.mkdir()
    (proj / "tasks.py").write_text('from amqpq import App\n\napp = App("tasks")\n')
    (elsewhere / "script.py").write_text(
        "from tasks import app\n"
        "app.topology\n"
        "app.topology  # asked twice: still one warning at most\n"
        "print(app.topology_source)\n"
        "print(','.join(q.name for q in app.topology.queues))\n"
    )
    return proj, elsewhere


def _run(proj: Path, elsewhere: Path, **env: str) -> tuple[list[str], str]:
    done = run_script(
        elsewhere / "script.py",
        env=amqpq_env("amqp://guest:guest@127.0.0.1:5672/", PYTHONPATH=str(proj), **env),
        cwd=elsewhere,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines(), done.stderr


def test_the_file_beside_the_apps_module_wins_over_the_current_folders(
    folders: tuple[Path, Path],
) -> None:
    proj, elsewhere = folders
    (proj / "amqpq.yaml").write_text(_topology("beside"))
    (elsewhere / "amqpq.yaml").write_text(_topology("cwd"))

    out, err = _run(proj, elsewhere)

    assert out == [str(proj / "amqpq.yaml"), "beside"]
    assert err == ""


def test_amqpq_topology_wins_over_the_file_beside_the_module(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    proj, elsewhere = folders
    (proj / "amqpq.yaml").write_text(_topology("beside"))
    named = tmp_path / "named.yaml"
    named.write_text(_topology("named"))

    out, _ = _run(proj, elsewhere, AMQPQ_TOPOLOGY=str(named))

    assert out == [str(named), "named"]


def test_without_a_file_beside_the_module_the_current_folders_is_read(
    folders: tuple[Path, Path],
) -> None:
    proj, elsewhere = folders
    (elsewhere / "amqpq.yaml").write_text(_topology("cwd"))

    out, err = _run(proj, elsewhere)

    assert out == [str(elsewhere / "amqpq.yaml"), "cwd"]
    assert err == ""


def test_without_any_file_the_default_is_used_and_one_warning_says_so(
    folders: tuple[Path, Path],
) -> None:
    proj, elsewhere = folders

    out, err = _run(proj, elsewhere)

    assert out == ["<built-in default topology>", "default"]
    [warning] = err.splitlines()
    assert "using the built-in default topology" in warning
    assert str(proj / "amqpq.yaml") in warning
