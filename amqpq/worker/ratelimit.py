"""Per-task rate limits (``rate_limit="10/s"``), enforced per worker process.

A token bucket per task name: tokens refill at the task's rate up to ``capacity``
(1 by default, so tasks are spaced evenly: "5/s" starts one every 200 ms). A
delivery that finds no token reserves the next one and sleeps until it is due,
before it takes an execution slot: it holds only its own prefetch slot while it
waits, and other tasks keep running. As in Celery, the limit is per worker
process: N processes consuming the queue run up to N times the rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    """Reservations on a refilling bucket; :meth:`reserve` returns how long to wait."""

    __slots__ = ("_clock", "_last", "_tokens", "capacity", "rate")

    def __init__(
        self, rate: float, capacity: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()

    def reserve(self) -> float:
        """Take one token now or in the future; seconds until it is ours (0: go now).

        Tokens may go negative: each waiter reserves the next free one, so N waiters
        started together leave at 0, 1/rate, 2/rate, ... seconds.
        """
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate


class RateLimiter:
    """The buckets of one worker process, by task name."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._clock = clock
        self.waiting = 0

    def delay_for(self, task: str, rate: float) -> float:
        bucket = self._buckets.get(task)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[task] = TokenBucket(rate, clock=self._clock)
        return bucket.reserve()

    async def wait(self, task: str, rate: float) -> float:
        """Sleep until this task may start; returns the seconds waited."""
        delay = self.delay_for(task, rate)
        if delay > 0:
            self.waiting += 1
            try:
                await asyncio.sleep(delay)
            finally:
                self.waiting -= 1
        return delay
