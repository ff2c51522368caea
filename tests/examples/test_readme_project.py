"""README's project as a newcomer writes it: its amqpq.yaml, its tasks.py, its snippets.

The files are taken from README.md itself, so the test follows the README.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, Processes, amqpq_env
from tests.support.scripts import run_script

pytestmark = pytest.mark.rabbitmq

README = (REPO_ROOT / "README.md").read_text()


def _block_after(marker: str, language: str) -> str:
    """The first fenced ``language`` block after the line containing ``marker``."""
    start = README.index(marker)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(README, start)
    assert match is not None, f"no {language} block after {marker!r} in README.md"
    return match.group(1)


def readme_project(root: Path) -> Path:
    """``root/shop`` with README's amqpq.yaml and tasks.py."""
    shop = root / "shop"
    shop.mkdir()
    (shop / "amqpq.yaml").write_text(_block_after("Declare what lives on the broker", "yaml"))
    (shop / "tasks.py").write_text(_block_after("Write tasks (`tasks.py`)", "python"))
    return shop


def readme_async_snippet() -> str:
    """README's asyncio handler, as written there."""
    block = _block_after("Send work and get results", "python")
    start = block.index("async def handler")
    lines = block[start:].split("\n\n")[0]
    return lines.rstrip() + "\n"


@pytest.fixture
def shop(tmp_path: Path, broker_url: str, amqpq_processes: Processes) -> Path:
    """README's project with its worker running (which declares the project's topology)."""
    project = readme_project(tmp_path)
    worker = amqpq_processes.start(
        "worker", "-A", "tasks", "-c", "2", env=amqpq_env(broker_url), cwd=project
    )
    worker.started_blocking()
    return project


def test_a_script_in_another_folder_uses_the_projects_topology_file(
    shop: Path, tmp_path: Path, broker_url: str
) -> None:
    # Given a script elsewhere (no amqpq.yaml there) that imports the project's tasks
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = elsewhere / "report.py"
    script.write_text(
        "import logging\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s %(message)s')\n"
        "from tasks import add, app\n"
        "print(add.delay(3, 4).get(timeout=10))\n"
        "print(app.topology_source)\n"
        "app.close()\n"
    )
    env = amqpq_env(broker_url, PYTHONPATH=str(shop))

    # When it runs from its own folder
    done = run_script(script, env=env, cwd=elsewhere)

    # Then it used the file beside tasks.py (not the built-in default) and said so once
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["7", str(shop / "amqpq.yaml")]
    said = [line for line in done.stderr.splitlines() if "topology from" in line]
    assert said == [f"INFO amqpq.app App tasks: topology from {shop / 'amqpq.yaml'}"]
    assert "built-in default" not in done.stderr


def test_readmes_async_snippet_exits_cleanly_with_a_plain_asyncio_run(
    shop: Path, broker_url: str
) -> None:
    # Given README's snippet, run as it stands with a plain asyncio.run (no app.aclose())
    script = shop / "async_snippet.py"
    script.write_text(
        "import asyncio\n\nfrom tasks import add\n\n\n"
        + readme_async_snippet()
        + "\n\nprint(asyncio.run(handler()))\n"
    )

    done = run_script(script, env=amqpq_env(broker_url), cwd=shop)

    # Then it prints the result and nothing on stderr: no pending task destroyed, no
    # "Event loop is closed" from a connection left open at the loop's end
    assert done.returncode == 0, done.stderr
    assert done.stdout == "7\n"
    assert done.stderr == ""


def test_the_readme_workflows_run_with_no_result_store(
    shop: Path, tmp_path: Path, broker_url: str
) -> None:
    script = shop / "workflows.py"
    script.write_text(_block_after("Compose tasks as with Celery's canvas", "python"))
    done = run_script(script, env=amqpq_env(broker_url), cwd=shop)
    assert done.returncode == 0, done.stderr
