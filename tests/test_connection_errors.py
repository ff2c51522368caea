"""A broker that cannot be reached is one line, in one wording, naming the URL (password
hidden) and the cause: from every long-running command and from a producer, with no
client library's log line before it and no talk of a "connection loss" that never was."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from amqpq.errors import ExitCode
from tests.support.processes import REPO_ROOT, amqpq_env

EXAMPLE = REPO_ROOT / "examples" / "amqpq.yaml"
UNREACHABLE = "amqp://guest:s3cret@127.0.0.1:1/"
ONE_LINE = "error: cannot connect to RabbitMQ: amqp://guest@127.0.0.1:1/%2F: connection refused"
REFUSED = "cannot connect to RabbitMQ: amqp://guest@127.0.0.1:1/%2F: connection refused"


@pytest.fixture
def task_module(tmp_path: Path) -> Path:
    (tmp_path / "errtasks.py").write_text(
        textwrap.dedent(
            f"""
            from amqpq import App

            app = App("errtasks", topology={str(EXAMPLE)!r})


            @app.task
            def add(x: int, y: int) -> int:
                return x + y
            """
        )
    )
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [
        ["inspect"],
        ["events"],
        ["worker", "-A", "errtasks"],
        ["worker", "-A", "errtasks", "--workers", "1"],
        ["beat"],
    ],
    ids=["inspect", "events", "worker", "worker-1", "beat"],
)
def test_each_command_says_once_that_it_cannot_connect(
    command: list[str], task_module: Path
) -> None:
    env = amqpq_env(UNREACHABLE)
    done = subprocess.run(
        [sys.executable, "-m", "amqpq", *command, "-f", str(EXAMPLE)],
        cwd=task_module,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == ExitCode.BROKER, done.stderr
    assert done.stderr.splitlines() == [ONE_LINE]
    assert "s3cret" not in done.stdout + done.stderr


PRODUCER = """
import asyncio, sys
from amqpq import App
from amqpq.errors import BrokerUnreachableError

app = App("errs", url={url!r}, topology={topology!r})
try:
    if sys.argv[1] == "sync":
        app.send_task("errs.add", [1, 2])
    else:
        asyncio.run(app.asend_task("errs.add", [1, 2]))
except BrokerUnreachableError as exc:
    print(f"{{type(exc).__name__}}: {{exc}}")
"""


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_producer_that_never_connected_raises_one_error_and_logs_nothing(
    flavour: str, tmp_path: Path
) -> None:
    # A plain script that configured no logging: Python's last-resort handler would show
    # any WARNING (the sync producer's "retrying 1 publish(es) after a connection loss",
    # aiormq's "error when creating transport") on stderr.
    script = tmp_path / "send.py"
    script.write_text(PRODUCER.format(url=UNREACHABLE, topology=str(EXAMPLE)))
    done = subprocess.run(
        [sys.executable, str(script), flavour],
        env=amqpq_env(UNREACHABLE),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.splitlines() == [f"BrokerUnreachableError: {REFUSED}"]
    assert done.stderr == ""
