"""The examples of docs/guide.md, end to end: a script, a FastAPI app and a Django view
send tasks to a real ``amqpq worker -A web_tasks`` on a vhost of their own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amqpq import App
from amqpq.settings import Settings
from tests.support.broker import create_vhost, delete_vhost
from tests.support.processes import AmqpqProcess, amqpq_env

pytestmark = pytest.mark.rabbitmq

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DJANGO_PROJECT = EXAMPLES / "django_view"
for _path in (EXAMPLES, DJANGO_PROJECT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@pytest.fixture(scope="module")
def examples_url(management: httpx.Client) -> Iterator[str]:
    """One vhost for this module (the worker is shared by its tests), deleted afterwards."""
    name = f"amqpq-test-examples-{uuid.uuid4().hex[:6]}"
    url = create_vhost(management, name)
    try:
        yield url
    finally:
        delete_vhost(management, name)


@pytest.fixture(scope="module")
def worker(examples_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AmqpqProcess]:
    """``amqpq worker -A web_tasks`` run from examples/, as the examples tell users to.

    It declares the topology of examples/amqpq.yaml when it starts.
    """
    process = AmqpqProcess(
        "worker",
        ["-A", "web_tasks", "-Q", "default,high_priority", "-c", "4", "--loglevel", "DEBUG"],
        amqpq_env(examples_url),
        tmp_path_factory.mktemp("examples") / "worker.log",
        cwd=EXAMPLES,
    )
    try:
        process.wait_for_log_blocking("worker started", timeout=20.0)
        yield process
    finally:
        process.stop(grace=10.0)


@pytest.fixture
def examples_app(
    worker: AmqpqProcess, examples_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    """The examples' App (built at import from the environment), aimed at this module's vhost."""
    from web_tasks import app

    app.close()
    monkeypatch.setattr(app, "settings", Settings(url=examples_url))
    try:
        yield app
    finally:
        app.close()


def test_the_script_sends_a_batch_and_prints_every_result(
    worker: AmqpqProcess, examples_url: str
) -> None:
    env = {**os.environ, "AMQPQ_URL": examples_url}
    env.pop("AMQPQ_TOPOLOGY", None)

    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "script.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout
    assert "sent 14 tasks" in lines
    assert "add(3, 4)             = 7" in lines
    assert "squares 1..10         = [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]" in lines
    assert "add(10, 20)           = 30" in lines
    assert "'to': 'ada@example.com', 'subject': 'Your report is ready'" in lines
    assert "add(100, 200) +2s     = 300" in lines


async def _poll_until_final(client: httpx.AsyncClient, task_id: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = await client.get(f"/reports/{task_id}")
        assert response.status_code == 200
        seen.append(response.json())
        if seen[-1]["state"] not in ("PENDING", "STARTED", "PROGRESS", "RETRY"):
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"no final state for {task_id} in 20s: {seen[-3:]}")


@pytest.fixture
async def fastapi_client(examples_app: App) -> AsyncIterator[httpx.AsyncClient]:
    from fastapi_app import api

    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as client,
    ):
        yield client


async def test_fastapi_answers_202_at_once_and_the_report_is_collected_by_id(
    fastapi_client: httpx.AsyncClient,
) -> None:
    # Given a report that takes about 2 s on the worker (10 sections of 0.2 s)
    started = time.monotonic()
    response = await fastapi_client.post(
        "/reports", json={"customer_id": 42, "period": "2026-03", "sections": 10}
    )
    elapsed = time.monotonic() - started

    # Then the POST answers before the work could have been done
    assert response.status_code == 202
    assert elapsed < 1.5  # generous: a loaded CI machine; the report itself takes 2 s
    task_id = response.json()["task_id"]
    assert response.json()["status_url"] == f"/reports/{task_id}"

    # And GET, polled, moves through progress to the result
    seen = await _poll_until_final(fastapi_client, task_id)
    assert seen[0]["state"] in ("PENDING", "PROGRESS")
    assert any(s.get("progress", {}).get("sections") == 10 for s in seen)
    assert seen[-1] == {
        "task_id": task_id,
        "state": "SUCCESS",
        "result": {
            "customer_id": 42,
            "period": "2026-03",
            "sections": 10,
            "total": sum(4200 + n for n in range(1, 11)),
            "url": "/media/reports/42-2026-03.pdf",
        },
    }
    # And asking again gives the same answer (the handle is kept)
    again = await fastapi_client.get(f"/reports/{task_id}")
    assert again.json() == seen[-1]


async def test_fastapi_collects_a_result_sent_by_another_app_process(
    examples_app: App,
) -> None:
    from fastapi_app import api

    transport = httpx.ASGITransport(app=api)
    # Given a report sent by one app process, which then shuts down
    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(transport=transport, base_url="http://test") as first,
    ):
        response = await first.post("/reports", json={"customer_id": 7, "period": "2026-04"})
        assert response.status_code == 202
        task_id = response.json()["task_id"]

    # When a fresh one (no handle for that id) is asked for it
    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(transport=transport, base_url="http://test") as second,
    ):
        seen = await _poll_until_final(second, task_id)

    # Then it collects the result from the durable result queue by id
    assert seen[-1]["state"] == "SUCCESS"
    assert seen[-1]["result"]["customer_id"] == 7


async def test_fastapi_refuses_an_invalid_report_request(
    fastapi_client: httpx.AsyncClient,
) -> None:
    response = await fastapi_client.post("/reports", json={"customer_id": -1, "period": "March"})

    assert response.status_code == 422


@pytest.fixture
def django_client(examples_app: App, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Django's test Client on examples/django_view (mysite.settings)."""
    import django

    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
    django.setup()
    from django.test import Client

    return Client()


def test_the_django_view_answers_at_once_and_the_worker_sends_the_email(
    worker: AmqpqProcess, examples_app: App, django_client: Any
) -> None:

    examples_app.producer.connect()  # as after the first request of a long-running server

    started = time.monotonic()
    response = django_client.post("/signup/", {"email": "grace@example.com"})
    elapsed = time.monotonic() - started

    assert response.status_code == 202, response.content
    assert elapsed < 2.0  # a publish and its confirm; the view never waits for the task
    task_id = response.json()["welcome_email_task"]
    worker.wait_for_log_blocking(f"task succeeded task=tasks.send_email id={task_id}", timeout=20.0)


def test_the_django_view_refuses_a_bad_address(django_client: Any) -> None:
    response = django_client.post("/signup/", {"email": "nobody"})

    assert response.status_code == 400
