"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

The screenshots these tests take are the pictures of docs/dashboard.md: they are
written there with ``AMQPQ_UPDATE_SCREENSHOTS=1`` (else to a temporary folder, so a test
run leaves the checkout as it was).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from amqpq.app import App
from amqpq.errors import RemoteTaskError
from tests.dashboard.conftest import Dashboard
from tests.support.processes import AmqpqProcess
from tests.support.waiting import eventually

CHROMIUM = os.environ.get("AMQPQ_CHROMIUM", "/usr/bin/chromium")
IMAGES = (
    Path(__file__).resolve().parents[2] / "docs" / "images"
    if os.environ.get("AMQPQ_UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "amqpq-dashboard-screenshots"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (scripts/services.sh installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    yield tab
    context.close()


def shoot(page: Any, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / name), full_page=True)


def test_overview_task_graph_retry_and_live_updates(
    start_worker: Callable[..., AmqpqProcess],
    start_dashboard: Callable[..., Dashboard],
    app: App,
    page: Any,
    tmp_path: Path,
) -> None:
    start_worker()
    dashboard = start_dashboard()
    # Given some history: tasks that succeeded, one that failed, a parent with children
    root = app.send_task("dt.add", [20, 22])
    assert root.get(timeout=15) == 42
    children = [
        app.send_task("dt.add", [i, i], parent_id=root.id, root_id=root.id) for i in range(3)
    ]
    grandchild = app.send_task("dt.add", [7, 7], parent_id=children[0].id, root_id=root.id)
    for result in [*children, grandchild]:
        result.get(timeout=15)
    for i in range(12):
        app.send_task("dt.add", [i, 1]).get(timeout=15)
    marker = tmp_path / "fixed"
    flaky = app.send_task("dt.flaky", [str(marker)])
    with pytest.raises(RemoteTaskError):
        flaky.get(timeout=15)
    dashboard.task(flaky.id, "FAILURE")
    dashboard.task(grandchild.id, "SUCCESS")

    # The overview loads with the worker, the queues and a chart (once the management API's
    # figures, which lag a few seconds, show the worker's consumer)
    eventually(
        lambda: dashboard.client.get("/api/queues").json()["queues"][0]["consumers"] == 1,
        timeout=30,
    )
    page.goto(dashboard.base + "/")
    page.wait_for_selector("#chart[data-ready='true'] canvas")
    page.wait_for_selector("#workers-table tbody tr")
    assert "online" in page.inner_text("#workers-table")
    assert "work" in page.inner_text("#queues-table")
    shoot(page, "dashboard-overview.png")

    # A live update arrives without a reload: a new task appears in the list
    page.goto(dashboard.base + "/tasks")
    page.wait_for_selector("#live.on")
    page.evaluate("window.__loaded = true")
    fresh = app.send_task("dt.add", [1000, 1])
    assert fresh.get(timeout=15) == 1001
    page.wait_for_selector(f"tr[data-task='{fresh.id}']", timeout=20_000)
    assert page.evaluate("window.__loaded") is True  # the same page: not reloaded
    shoot(page, "dashboard-tasks.png")

    # A task page shows its workflow graph: the root, its children and the grandchild
    page.goto(f"{dashboard.base}/tasks/{children[0].id}")
    graph = page.locator("#graph")
    graph.wait_for()
    for result in (root, *children, grandchild):
        assert graph.locator(f"[data-node='{result.id}']").count() == 1
    assert graph.locator(".node.current").get_attribute("data-node") == children[0].id
    assert "42" not in page.inner_text("#args")
    shoot(page, "dashboard-task.png")

    # The retry button sends the failed task again (its cause fixed now): a linked new task
    page.goto(f"{dashboard.base}/tasks/{flaky.id}")
    assert "FAILURE" in page.inner_text("h1")
    assert "RuntimeError" in page.inner_text("#error")
    marker.touch()
    page.click("button[data-action='retry']")
    link = page.wait_for_selector("a.retried-as", timeout=20_000)
    new_id = link.inner_text().strip()
    assert new_id != flaky.id
    assert dashboard.task(new_id, "SUCCESS")["retry_of"] == flaky.id
    shoot(page, "dashboard-retry.png")

    # The queues page lists the dead letter of the first failure, with replay and purge
    page.goto(f"{dashboard.base}/queues?dlq=work")
    page.wait_for_selector("#dead-letters")
    assert flaky.id[:8] in page.inner_text("#dead-letters")
    assert page.locator("button[data-action='purge']").count() == 1
    shoot(page, "dashboard-dead-letters.png")
