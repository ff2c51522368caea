"""A reusable module's tasks (as a Django app would declare them): no App imported here.

``newcomer_tasks`` imports it before it creates its App, so the shared task must reach
an App created after it.
"""

from __future__ import annotations

from amqpq import shared_task


@shared_task
def multiply(x: int, y: int) -> int:
    return x * y
