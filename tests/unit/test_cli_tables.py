"""Tables printed on a narrow terminal or into a pipe fold long names, never cut them."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from amqpq.cli import status as status_module

LONG_QUEUE = "accounting.delivery.notifications.high_priority"
LONG_WORKER = "worker build-server-eu-west-1.example.internal:123456 tasks,accounting"


def _document() -> dict[str, Any]:
    queue = {
        "name": LONG_QUEUE,
        "type": "quorum",
        "exists": True,
        "ready": 12,
        "unacked": 3,
        "consumers": 2,
        "publish_rate": 1.0,
        "deliver_rate": 2.0,
        "dead_letters": 0,
    }
    worker = {
        "name": f"{status_module.WORKER_PREFIX}{LONG_WORKER}",
        "connected_at": "2026-12-02 21:00:00",
        "channels": 3,
        "consumers": [{"queue": LONG_QUEUE, "prefetch": 8}],
    }
    return {
        "vhost": "/",
        "queues": [queue],
        "delayed": None,
        "workers": [worker],
        "schedules": 0,
        "beats": [],
    }


def _first_column(text: str) -> str:
    """The first column's cells of every row, joined: a folded name reads whole again."""
    cells = [line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2]
    return "".join(cells)


def test_status_tables_fold_long_names_at_80_columns_instead_of_cutting_them() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(status_module._render(_document()))

    text = console.export_text()
    assert "…" not in text
    assert LONG_QUEUE in _first_column(text)
    assert LONG_WORKER.replace(" ", "") in _first_column(text).replace(" ", "")


def test_status_tables_fold_even_at_40_columns() -> None:
    console = Console(width=40, record=True, color_system=None)
    console.print(status_module._render(_document()))

    text = console.export_text()
    assert "…" not in text
    assert LONG_QUEUE in _first_column(text)


def test_status_lists_each_schedules_next_run() -> None:
    document = _document()
    document["schedules"] = 1
    document["next_runs"] = [
        {
            "schedule": "daily-report",
            "task": "reports.daily",
            "next_run": "2026-12-03T00:00:00Z",
            "next_run_local": "2026-12-03 09:00:00 Asia/Seoul (2026-12-03T00:00:00Z)",
        }
    ]
    console = Console(width=120, record=True, color_system=None)
    console.print(status_module._render(document))

    text = console.export_text()
    assert "schedules" in text
    assert "daily-report" in text
    assert "2026-12-03 09:00:00 Asia/Seoul (2026-12-03T00:00:00Z)" in text
