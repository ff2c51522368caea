"""The dashboard's JSON API against the real broker: a default worker (no flags) + the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from amqpq.app import App
from amqpq.errors import RemoteTaskError as TaskError
from tests.dashboard.conftest import Dashboard
from tests.support.processes import AmqpqProcess
from tests.support.stores import postgres_history_url
from tests.support.waiting import eventually


def test_tasks_appear_with_their_states_arguments_results_and_workflow(
    start_worker: Callable[..., AmqpqProcess],
    start_dashboard: Callable[..., Dashboard],
    app: App,
) -> None:
    # Given a default worker and the dashboard
    start_worker()
    dashboard = start_dashboard()
    # When tasks succeed, fail, and one is a child of another
    ok = app.send_task("dt.add", [2, 3])
    assert ok.get(timeout=15) == 5
    bad = app.send_task("dt.fail", ["boom"])
    with pytest.raises(TaskError):
        bad.get(timeout=15)
    child = app.send_task("dt.add", [1, 1], parent_id=ok.id, root_id=ok.id)
    assert child.get(timeout=15) == 2

    # Then each task is there in its final state, with what its events said
    done = dashboard.task(ok.id, "SUCCESS")
    assert done["name"] == "dt.add"
    assert done["args"] == [2, 3]
    assert done["result"] == "5"
    assert done["queue"] == "work"
    assert done["runtime"] >= 0
    assert [e["type"] for e in done["timeline"]] == [
        "task.received",
        "task.started",
        "task.succeeded",
    ]
    failed = dashboard.task(bad.id, "FAILURE")
    assert failed["error"] == "ValueError"
    assert failed["message"] == "boom"
    assert "Traceback" in failed["traceback"]
    # And the parent knows its child (the workflow graph)
    parent = dashboard.task(ok.id)
    assert [c["id"] for c in parent["children"]] == [child.id]
    assert {t["id"] for t in parent["workflow"]} == {ok.id, child.id}

    # And the list filters by state, name and text, newest first, with pagination
    api = dashboard.client
    failures = api.get("/api/tasks", params={"state": "failure"}).json()
    assert [t["id"] for t in failures["tasks"]] == [bad.id]
    adds = api.get("/api/tasks", params={"name": "dt.add", "limit": 1}).json()
    assert adds["total"] == 2
    assert len(adds["tasks"]) == 1
    second = api.get("/api/tasks", params={"name": "dt.add", "limit": 1, "offset": 1}).json()
    assert {adds["tasks"][0]["id"], second["tasks"][0]["id"]} == {ok.id, child.id}
    assert [t["id"] for t in api.get("/api/tasks", params={"q": "boom"}).json()["tasks"]] == [
        bad.id
    ]
    assert api.get("/api/tasks", params={"since": "5m"}).json()["total"] == 3

    # And the worker is online, with its pool
    workers = eventually(lambda: api.get("/api/workers").json()["workers"] or None)
    assert workers[0]["online"]
    assert workers[0]["pool"]
    assert workers[0]["queues"] == ["work"]

    # And the queues come from the management API (its figures lag a few seconds), the dead
    # letter counted
    def work_queue() -> dict[str, Any] | None:
        queues = api.get("/api/queues").json()
        work = next(q for q in queues["queues"] if q["name"] == "work")
        return queues if work["consumers"] == 1 and work["dead_letters"] == 1 else None

    assert eventually(work_queue, timeout=30)["delayed"] == 0

    # And schedules, metrics and health answer
    schedules = api.get("/api/schedules").json()["schedules"]
    assert schedules[0]["name"] == "nightly-report"
    assert schedules[0]["next_run"]
    metrics = api.get("/metrics").text
    assert 'amqpq_dashboard_tasks{state="SUCCESS",task="dt.add"} 2.0' in metrics
    assert 'amqpq_queue_messages{kind="dead_letters",queue="work"} 1.0' in metrics
    assert "amqpq_dashboard_workers_online 1.0" in metrics


def test_retry_revoke_and_dead_letter_replay(
    start_worker: Callable[..., AmqpqProcess],
    start_dashboard: Callable[..., Dashboard],
    app: App,
    tmp_path: Path,
) -> None:
    start_worker()
    dashboard = start_dashboard()
    api = dashboard.client
    marker = tmp_path / "ready"

    # Given a task that failed
    first = app.send_task("dt.flaky", [str(marker)])
    with pytest.raises(TaskError):
        first.get(timeout=15)
    dashboard.task(first.id, "FAILURE")

    # When it is retried from the dashboard once its cause is fixed
    marker.touch()
    response = api.post(f"/api/tasks/{first.id}/retry")
    assert response.status_code == 201, response.text
    new_id = response.json()["id"]
    assert new_id != first.id

    # Then a new task ran with the same arguments, linked to the old one
    again = dashboard.task(new_id, "SUCCESS")
    assert again["args"] == [str(marker)]
    assert again["retry_of"] == first.id
    assert dashboard.task(first.id)["retried_as"] == [new_id]

    # And the failed task's dead letter can be replayed (it succeeds now)
    letters = eventually(lambda: api.get("/api/queues/work/dead-letters").json()["letters"] or None)
    assert letters[0]["task_id"] == first.id
    replayed = api.post("/api/queues/work/dead-letters/replay", json={"id": first.id}).json()
    assert replayed["replayed"] == 1
    dashboard.task(first.id, "SUCCESS")
    assert api.get("/api/queues/work/dead-letters").json()["count"] == 0

    # And a task revoked before it runs is skipped by the worker: REVOKED
    blocker = app.send_task("dt.sleep", [1.0])
    later = app.send_task("dt.add", [4, 4], countdown=2)
    revoked = api.post(f"/api/tasks/{later.id}/revoke", json={"terminate": False})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"] == later.id
    assert blocker.get(timeout=15) == "slept"
    dashboard.task(later.id, "REVOKED")

    # And purge empties the dead letters
    with pytest.raises(TaskError):
        app.send_task("dt.fail", ["again"]).get(timeout=15)
    eventually(lambda: api.get("/api/queues/work/dead-letters").json()["count"] == 1)
    assert api.post("/api/queues/work/dead-letters/purge").json()["purged"] == 1


def test_history_survives_restarts_of_the_dashboard_and_of_the_worker(
    start_worker: Callable[..., AmqpqProcess],
    start_dashboard: Callable[..., Dashboard],
    app: App,
) -> None:
    worker = start_worker()
    dashboard = start_dashboard()
    before = app.send_task("dt.add", [10, 1])
    assert before.get(timeout=15) == 11
    dashboard.task(before.id, "SUCCESS")

    # When the dashboard stops, a task runs meanwhile, and the worker restarts too
    dashboard.stop()
    during = app.send_task("dt.add", [10, 2])
    assert during.get(timeout=15) == 12
    worker.terminate()
    start_worker()
    after = app.send_task("dt.add", [10, 3])
    assert after.get(timeout=15) == 13

    # Then the restarted dashboard (same history file) has all three, each once
    dashboard = start_dashboard()
    for result in (before, during, after):
        task = dashboard.task(result.id, "SUCCESS")
        assert [e["type"] for e in task["timeline"]].count("task.succeeded") == 1
    total = dashboard.client.get("/api/tasks", params={"name": "dt.add"}).json()["total"]
    assert total == 3
    # And both workers are known: the first offline, the second online
    workers = dashboard.client.get("/api/workers").json()["workers"]
    assert sorted(w["online"] for w in workers) == [False, True]


def test_two_dashboards_share_one_postgresql_history(
    start_worker: Callable[..., AmqpqProcess],
    start_dashboard: Callable[..., Dashboard],
    app: App,
) -> None:
    with postgres_history_url() as url:
        # Given a default worker and two dashboards on one PostgreSQL history
        start_worker()
        one, two = start_dashboard(db=url), start_dashboard(db=url)
        first = app.send_task("dt.add", [20, 1])
        second = app.send_task("dt.add", [20, 2])
        assert first.get(timeout=15) == 21
        assert second.get(timeout=15) == 22

        # Then each dashboard shows each task once, and counts it once
        def once(dashboard: Dashboard, results: list[Any]) -> None:
            for result in results:
                task = dashboard.task(result.id, "SUCCESS")
                assert [e["type"] for e in task["timeline"]].count("task.succeeded") == 1
            api = dashboard.client
            assert api.get("/api/tasks", params={"name": "dt.add"}).json()["total"] == len(results)
            minutes = api.get("/api/throughput").json()["minutes"]
            assert sum(m["succeeded"] for m in minutes) == len(results)

        once(one, [first, second])
        once(two, [first, second])

        # When one stops, a task runs, then the other stops and the first comes back
        one.stop()
        during = app.send_task("dt.add", [20, 3])
        assert during.get(timeout=15) == 23
        two.task(during.id, "SUCCESS")
        two.stop()
        after = app.send_task("dt.add", [20, 4])
        assert after.get(timeout=15) == 24

        # Then the history survived both restarts, each task in it once
        one = start_dashboard(db=url)
        once(one, [first, second, during, after])
        two = start_dashboard(db=url)
        once(two, [first, second, during, after])
        one.stop()
        two.stop()


def test_auth_bearer_token_read_only_and_json_errors(
    start_dashboard: Callable[..., Dashboard],
) -> None:
    dashboard = start_dashboard("--auth", "admin:s3cret:x", "--token", "tok-123", "--read-only")
    base = dashboard.base

    # Without credentials: 401 JSON on the API, a challenge on pages; health and metrics open
    denied = httpx.get(f"{base}/api/tasks")
    assert denied.status_code == 401
    assert denied.json() == {"error": "authentication required"}
    assert httpx.get(f"{base}/").headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/metrics").status_code == 200
    assert httpx.get(f"{base}/api/tasks", auth=("admin", "wrong")).status_code == 401

    # With basic auth (the password holds a colon) or the bearer token: allowed
    assert httpx.get(f"{base}/api/tasks", auth=("admin", "s3cret:x")).status_code == 200
    assert httpx.get(f"{base}/", auth=("admin", "s3cret:x")).status_code == 200
    bearer = {"Authorization": "Bearer tok-123"}
    assert httpx.get(f"{base}/api/workers", headers=bearer).status_code == 200
    assert httpx.get(f"{base}/", headers=bearer).status_code == 401  # the token is for the API

    # Read-only: every change is refused with 403 JSON
    for path in (
        "/api/tasks/x/retry",
        "/api/tasks/x/revoke",
        "/api/queues/work/dead-letters/replay",
        "/api/queues/work/dead-letters/purge",
    ):
        refused = httpx.post(f"{base}{path}", headers=bearer)
        assert refused.status_code == 403
        assert "read-only" in refused.json()["error"]

    # Bad input: 4xx with a JSON error
    api = dashboard.client
    api.headers.update(bearer)
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/api/tasks/nope", {}, 404, "not in the history"),
        ("/api/tasks", {"state": "sleepy"}, 400, "state 'SLEEPY'"),
        ("/api/tasks", {"limit": "many"}, 400, "whole numbers"),
        ("/api/tasks", {"since": "soon"}, 400, "since 'soon'"),
        ("/api/queues/nope/dead-letters", {}, 404, "not in the topology"),
        ("/api/nothing-here", {}, 404, "Not Found"),
    ]
    for path, params, status, message in cases:
        response = api.get(path, params=params)
        assert response.status_code == status, (path, response.text)
        assert message in response.json()["error"]


def test_events_are_on_by_default_and_off_with_without_events(
    start_worker: Callable[..., AmqpqProcess], env: dict[str, str]
) -> None:
    import json
    import subprocess
    import sys

    from tests.dashboard.conftest import HERE

    def inspected() -> list[dict[str, Any]]:
        out = subprocess.run(
            [sys.executable, "-m", "amqpq", "inspect", "--json", "--timeout", "3"],
            env=env,
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return list(json.loads(out)["workers"])

    default = start_worker()
    assert [w["events"] for w in eventually(inspected)] == [True]
    default.terminate()
    start_worker("--without-events")
    assert [w["events"] for w in eventually(inspected)] == [False]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["dashboard", "--address", "0.0.0.0"],
            "without --auth the dashboard listens on 127.0.0.1",
        ),
        (["dashboard", "--auth", "nocolon"], "--auth: expected USER:PASSWORD"),
        (["dashboard", "--token", "t"], "--token needs --auth"),
        (
            ["dashboard", "--db", "postgresql://nobody@127.0.0.1:1/none"],
            "history postgresql://nobody@127.0.0.1:1/none: connection failed",
        ),
        (["dashboard", "--db", "mysql://db/x"], "--db mysql://db/x: unknown scheme"),
        (["events", "--since", "soon"], "--since 'soon'"),
    ],
)
def test_bad_command_lines_say_one_line(argv: list[str], message: str) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "amqpq", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_postgresql_history_without_psycopg_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import runpy, sys; sys.modules['psycopg'] = None; "
        "sys.argv = ['amqpq', 'dashboard', '--db', 'postgresql://u@127.0.0.1/db']; "
        "runpy.run_module('amqpq', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "pip install 'amqpq[postgres]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
