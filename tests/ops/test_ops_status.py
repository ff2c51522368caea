"""``amqpq status`` and the whole dead-letter round trip with a real worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.ops.ops_helpers import TOPOLOGY
from tests.support.cli import Cli
from tests.support.pika_clients import PlainClient, envelope
from tests.support.waiting import eventually

pytestmark = pytest.mark.rabbitmq


def test_a_task_that_failed_on_a_bug_is_replayed_after_the_fix_and_succeeds(
    plain: PlainClient,
    cli: Cli,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # Given a worker and a task that fails because of a "bug"
    worker = start_worker("-Q", "work", "-c", "2")
    fixed, done = tmp_path / "fixed", tmp_path / "done"
    task_id, body = envelope("ops.fragile", args=[str(fixed), str(done)])
    plain.publish("ops", "work", body, task_id)
    plain.wait_count("work.dlq", 1)

    # Then status shows the worker, its consumer and the dead letter, once the management
    # statistics caught up (they lag by the stats interval)
    seen: dict[str, Any] = {}

    def caught_up() -> bool:
        seen.update(cli.json("status"))
        queues = {q["name"]: q for q in seen["queues"]}
        mine = [w for w in seen["workers"] if w["pid"] == worker.pid and w["consumers"]]
        return (
            bool(mine) and queues["work"]["consumers"] == 1 and queues["work"]["dead_letters"] == 1
        )

    eventually(caught_up, 20.0, what="the worker and the dead letter in the management statistics")
    [me] = [w for w in seen["workers"] if w["pid"] == worker.pid]
    assert me["name"].startswith("amqpq worker ")
    assert [c["queue"] for c in me["consumers"]] == ["work"]
    assert me["consumers"][0]["consumer_tag"].startswith("amqpq-worker.")
    queues = {q["name"]: q for q in seen["queues"]}
    assert [q["name"] for q in seen["queues"]] == ["work", "qwork"]
    assert queues["qwork"]["type"] == "quorum"
    assert seen["delayed"] == 0
    [letter] = cli.json("dlq", "show", "work")["letters"]
    assert (letter["reason"], letter["error_type"]) == ("failed", "ValueError")
    assert letter["error_message"] == "bug: the flag file is missing"
    assert not done.exists()

    # When the fix is deployed and the dead letter replayed
    fixed.write_text("fixed")
    result = cli("dlq", "replay", "work")

    # Then the task runs and succeeds, and the dead-letter queue stays empty
    assert result.exit_code == 0, result.output
    assert "replayed 1 dead letter(s) from work.dlq" in result.stdout
    eventually(done.exists, 20.0, what="the replayed task to run")
    assert plain.count("work.dlq") == 0

    text = cli("status")
    assert text.exit_code == 0
    assert "queues in vhost" in text.stdout
    assert "workers (1)" in text.stdout


def test_status_without_workers_says_so(plain: PlainClient, cli: Cli) -> None:
    result = cli("status")
    assert result.exit_code == 0
    assert "no worker is connected" in result.stdout
    # A file without schedules needs no beat: nothing is said about beats
    assert "beat" not in result.stdout
    document = json.loads(cli("status", "--json").stdout)
    assert document["workers"] == []
    assert (document["schedules"], document["beats"]) == (0, [])
    assert [q["name"] for q in document["queues"]] == ["work", "qwork"]
    assert all(q["exists"] for q in document["queues"])


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_status_watch_refreshes_until_ctrl_c_and_exits_0(
    plain: PlainClient, broker_url: str
) -> None:
    env = {**os.environ, "AMQPQ_URL": broker_url, "AMQPQ_TOPOLOGY": str(TOPOLOGY)}
    process = subprocess.Popen(
        [sys.executable, "-m", "amqpq", "status", "--watch", "0.5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # As in a terminal: a suite run in the background (`... &`) ignores SIGINT, and
        # a child inherits that, so Ctrl-C would never reach it.
        preexec_fn=_interruptible,
    )
    try:
        time.sleep(2.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert b"queues in vhost" in out
    assert b"Traceback" not in err
