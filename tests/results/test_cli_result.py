"""``amqpq result ID``: a stored state by id, one line per error, the documented exit codes."""

from __future__ import annotations

import json

from amqpq.envelope import ErrorInfo, Reply, TaskState
from amqpq.results import open_store
from tests.support.cli import Cli
from tests.support.stores import port_closed

cli = Cli(env={"AMQPQ_RESULT_BACKEND": None})


def test_shows_a_stored_result_and_pending_for_an_unknown_id(store_url: str) -> None:
    if store_url.startswith("memory"):
        return  # a memory store lives in one process only
    store = open_store(store_url)
    store.save(Reply(id="order-42", task="tests.add", state=TaskState.SUCCESS, result=5), 60)
    store.close()
    document = json.loads(cli("result", "order-42", "--backend", store_url, "--json").stdout)
    assert document["state"] == "SUCCESS"
    assert document["result"] == 5
    plain = cli("result", "order-42", "--wait", env={"AMQPQ_RESULT_BACKEND": store_url})
    assert plain.exit_code == 0
    assert plain.stdout.startswith("order-42 SUCCESS")
    unknown = cli("result", "nobody", "--backend", store_url, "--json")
    assert unknown.exit_code == 0
    assert json.loads(unknown.stdout) == {"id": "nobody", "state": "PENDING"}
    waited = cli("result", "nobody", "--backend", store_url, "--wait", "--timeout", "0.2")
    assert waited.exit_code == 4


def test_a_failed_task_exits_1_with_wait(store_url: str) -> None:
    if store_url.startswith("memory"):
        return
    store = open_store(store_url)
    error = ErrorInfo(type="ValueError", message="no stock")
    store.save(Reply(id="f-1", task="tests.fail", state=TaskState.FAILURE, error=error), 60)
    store.close()
    done = cli("result", "f-1", "--backend", store_url, "--wait")
    assert done.exit_code == 1
    assert "no stock" in done.stdout


def test_errors_are_one_line() -> None:
    missing = cli("result", "x")
    assert missing.exit_code == 2
    assert "no result store" in missing.stderr
    unknown = cli("result", "x", "--backend", "mongodb://u:pw@h/db")
    assert unknown.exit_code == 2
    assert "pw" not in unknown.stderr
    down = cli("result", "x", "--backend", f"redis://u:pw@127.0.0.1:{port_closed()}/0")
    assert down.exit_code == 3
    assert len(down.stderr.strip().splitlines()) == 1
    assert "pw" not in down.stderr
