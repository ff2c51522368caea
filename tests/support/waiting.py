"""Polling until a condition holds, for states the broker or a subprocess reaches on its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    timeout: float = 15.0,
    pause: float = 0.1,
    what: str = "condition",
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``check()`` until it returns something truthy, and return that.

    An exception of a type in ``ignoring`` counts as "not yet" (an endpoint still starting).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except ignoring:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} ({timeout}s)")
        time.sleep(pause)
