"""Worker and task hooks: optional callables found on the App.

The App may carry, for each hook name, a callable or a list of callables,
either as ``app.hooks[name]`` (a mapping) or as an attribute ``app.on_<name>``.
Hooks are called with keyword arguments (so new ones can be added later):

- ``worker_start(worker=)``, ``worker_stop(worker=)``: in the worker's main process;
- ``task_prerun(request=, task=)``, ``task_postrun(request=, task=, state=, result=)``,
  ``task_failure(request=, task=, exception=)``: where the task runs (its thread,
  the event loop for ``async def`` tasks, or the child process);
- ``task_retry(request=, task=, countdown=, error=)``: in the main process once the
  retry is scheduled.

A hook that raises is logged and otherwise ignored: hooks never stop a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["HOOK_NAMES", "Hooks"]

log = logging.getLogger("amqpq.worker")

HOOK_NAMES = (
    "worker_start",
    "worker_stop",
    "task_prerun",
    "task_postrun",
    "task_failure",
    "task_retry",
)


class Hooks:
    """The hooks of one App, resolved once at start so the hot path checks a tuple."""

    def __init__(self, app: object) -> None:
        self._hooks: dict[str, tuple[Callable[..., Any], ...]] = {
            name: _resolve(app, name) for name in HOOK_NAMES
        }
        self.task_prerun = bool(self._hooks["task_prerun"])
        self.task_postrun = bool(self._hooks["task_postrun"])
        self.task_failure = bool(self._hooks["task_failure"])
        self.any_task_hooks = self.task_prerun or self.task_postrun or self.task_failure

    def __call__(self, name: str, **kwargs: Any) -> None:
        for hook in self._hooks.get(name, ()):
            try:
                hook(**kwargs)
            except Exception:
                log.exception("hook %s (%r) raised; ignored", name, hook)


def _resolve(app: object, name: str) -> tuple[Callable[..., Any], ...]:
    found: object = None
    registry = getattr(app, "hooks", None)
    if isinstance(registry, Mapping):
        found = registry.get(name)
    if found is None:
        found = getattr(app, f"on_{name}", None)
    if found is None:
        return ()
    if callable(found):
        return (found,)
    if isinstance(found, list | tuple):
        return tuple(f for f in found if callable(f))
    return ()
