"""What a pool runs: a :class:`Job`, and the :class:`Pool` protocol every pool implements."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from amqpq.registry import Request, Task
from amqpq.worker.execution import Outcome

__all__ = ["AsyncProgress", "Job", "Pool"]

AsyncProgress = Callable[[str, dict[str, Any] | None], Coroutine[Any, Any, None]]


class Job:
    """One task to run: validated arguments for local pools, the wire ones for children.

    The :class:`Request` is built on first use: most tasks (not bound, no hooks) never
    look at it, and a drained queue of tiny tasks should not pay for it.
    """

    __slots__ = (
        "_make_request",
        "_request",
        "args",
        "kwargs",
        "progress",
        "task",
        "wire_args",
        "wire_kwargs",
    )

    def __init__(
        self,
        task: Task[Any, Any],
        args: list[Any],
        kwargs: dict[str, Any],
        wire_args: list[Any],
        wire_kwargs: dict[str, Any],
        request: Callable[[], Request],
        progress: AsyncProgress,
    ) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.wire_args = wire_args
        self.wire_kwargs = wire_kwargs
        self._make_request = request
        self._request: Request | None = None
        self.progress = progress

    @property
    def request(self) -> Request:
        if self._request is None:
            self._request = self._make_request()
        return self._request


class Pool(Protocol):
    kind: str
    size: int

    async def start(self) -> None: ...

    async def run(self, job: Job) -> Outcome: ...

    async def close(self) -> None:
        """After the in-flight tasks finished: release threads or stop the children."""
        ...

    def terminate(self) -> None:
        """Stop now (second signal): kill children; threads are abandoned."""
        ...
