"""A call's shadow name and the worker's version, where an operator looks: the worker's
log, ``amqpq inspect`` (text and --json)."""

from __future__ import annotations

from functools import partial
from importlib.metadata import version
from pathlib import Path

import pytest

from amqpq.app import App
from amqpq.envelope import TaskState
from amqpq.errors import ConfigError
from tests.support.cli import run_cli, run_cli_json
from tests.support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq]

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "control_topology.yaml"

cli = partial(run_cli, cwd=HERE)
cli_json = partial(run_cli_json, cwd=HERE)


def test_a_shadow_name_shows_in_inspect_and_the_worker_log_and_the_version_too(
    start_worker, app: App, env: dict[str, str]
) -> None:
    # Given a worker (debug level: it logs every success)
    worker = start_worker("-c", "2", "--loglevel", "debug").started_blocking()
    installed = version("amqpq")
    # Its start line says which amqpq and which topology file
    assert f"worker started amqpq={installed} app=ct " in worker.log()
    assert f"topology={TOPOLOGY}" in worker.log()

    # When a task is sent with a display name for this call
    running = app.send_task("ct.sleep", [30], shadow="render:invoice-42")  # outlasts the CLI
    eventually(lambda: running.state is TaskState.STARTED)

    # Then inspect shows it next to the task, and the worker's version
    [found] = cli_json(env, "inspect")["workers"]
    assert found["version"] == installed
    [active] = found["active"]
    assert (active["task"], active["shadow"]) == ("ct.sleep", "render:invoice-42")
    text = cli(env, "inspect").stdout
    assert "ct.sleep (render:invoice-42)" in text
    assert f"amqpq={installed}" in text
    # And the worker's log line of a task names it
    assert app.send_task("ct.add", [1, 2], shadow="add:order-7").get(timeout=30) == 3
    worker.wait_for_log_blocking("task succeeded task=ct.add shadow=add:order-7 ")


def test_a_shadow_name_must_be_a_short_printable_string(app: App) -> None:
    for bad in ("", "x" * 256, "two\nlines", 42):
        with pytest.raises(ConfigError, match="shadow must be a display name"):
            app.send_task("ct.add", [1, 2], shadow=bad)
