"""The demo's tasks, one per route of ``examples/amqpq.yaml`` (SPEC §2).

Run a worker for them from this directory::

    amqpq worker -A tasks                  # every work queue of the file
    amqpq worker -A tasks -Q high_priority # only the e-mails

Task names decide the route: ``tasks.send_email`` goes to the ``tasks`` exchange
with key ``high`` (queue ``high_priority``), ``tasks.on_signup`` through the topic
exchange to ``signups``, ``tasks.audit`` through the fanout exchange to every
audit queue, ``reports.*`` through the headers exchange to ``pdf``, and
everything else to ``default``.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from amqpq import App, TaskContext

app = App("tasks", topology=Path(__file__).with_name("amqpq.yaml"))


@app.task
def add(x: int, y: int) -> int:
    """Route ``*`` -> exchange ``tasks``, key ``default`` -> queue ``default`` (quorum)."""
    return x + y


@app.task(max_retries=5, retry_backoff=True, autoretry_for=(ConnectionError,))
def send_email(to: str, subject: str, body: str = "") -> dict[str, Any]:
    """Route ``tasks.send_email`` -> exchange ``tasks``, key ``high`` -> ``high_priority``."""
    time.sleep(0.05)  # the SMTP round trip
    message_id = hashlib.sha1(f"{to}|{subject}|{body}".encode()).hexdigest()[:12]
    return {"to": to, "subject": subject, "message_id": f"<{message_id}@example.com>"}


@app.task
def on_signup(user_id: int, username: str) -> str:
    """Route ``tasks.on_signup`` -> topic exchange ``events``, key ``user.signup`` -> ``signups``."""
    time.sleep(0.02)
    return f"welcome pack queued for {username} (user {user_id})"


@app.task
def audit(event: str, details: dict[str, Any]) -> str:
    """Route ``tasks.audit`` -> fanout exchange ``broadcast`` -> ``audit_a`` (and every audit queue)."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return f"{stamp} audit {event} {sorted(details.items())}"


@app.task(name="reports.pdf", bind=True, time_limit=60)
def render_pdf(self: TaskContext, document: str, pages: int = 3) -> dict[str, Any]:
    """Route ``reports.*`` -> headers exchange ``reports`` (format=pdf) -> ``pdf``."""
    for page in range(1, pages + 1):
        time.sleep(0.02)  # render one page
        self.update_state(meta={"page": page, "pages": pages})
    size = 18_000 + 2_500 * pages
    return {"document": f"{document}.pdf", "pages": pages, "bytes": size}


@app.task(name="reports.daily")
def daily_report(day: date | None = None) -> str:
    """The schedule ``daily-report`` sends this one (cron 0 9 * * *, Asia/Seoul)."""
    day = day or datetime.now(UTC).date()
    time.sleep(0.05)
    return f"daily report for {day.isoformat()}: ok"
