"""The slow work behind the web examples (``script.py``, ``fastapi_app.py``, ``django_view/``).

The tasks join the demo's App from ``tasks.py``, so one worker runs both sets and
the routes of ``amqpq.yaml`` apply: ``web_tasks.*`` falls under the catch-all
route (exchange ``tasks``, key ``default`` -> queue ``default``) and
``tasks.send_email`` goes to ``high_priority``. Run a worker for them from this
directory::

    amqpq worker -A web_tasks -Q default,high_priority -c 4
"""

from __future__ import annotations

import time
from typing import Any

from tasks import add, app, send_email

from amqpq import TaskContext

__all__ = ["add", "app", "generate_report", "send_email", "slow_square"]


@app.task(bind=True, time_limit=120, max_retries=2)
def generate_report(
    self: TaskContext, customer_id: int, period: str, sections: int = 3
) -> dict[str, Any]:
    """A report that takes a while: one section at a time, reporting progress."""
    totals: list[int] = []
    for section in range(1, sections + 1):
        time.sleep(0.2)  # the expensive query for one section
        totals.append(customer_id * 100 + section)
        self.update_state(meta={"section": section, "sections": sections})
    return {
        "customer_id": customer_id,
        "period": period,
        "sections": sections,
        "total": sum(totals),
        "url": f"/media/reports/{customer_id}-{period}.pdf",
    }


@app.task
def slow_square(x: int) -> int:
    """A small unit of work for the bulk examples."""
    time.sleep(0.05)
    return x * x
