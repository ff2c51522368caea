"""Worker and task hooks: optional callables found on the App.

Register them with the App's decorators (``@app.on_worker_start``,
``@app.on_task_success``, ...), which fill ``app.hooks[name]``. Older styles
still work: ``app.hooks[name]`` set by hand to a callable or a list of
callables, or an attribute ``app.on_<name>`` holding one (both are used).
Hooks are called with keyword arguments (so new ones can be added later):

- ``worker_start(worker=)``, ``worker_stop(worker=)``: in the worker's main process;
- ``task_prerun(request=, task=)``, ``task_postrun(request=, task=, state=, result=)``,
  ``task_failure(request=, task=, exception=)``: where the task runs (its thread,
  the event loop for ``async def`` tasks, or the child process);
- ``task_success(request=, task=, result=)``: where the task runs, after it returned;
- ``task_retry(request=, task=, countdown=, error=)``: in the main process once the
  retry is scheduled;
- ``before_publish`` / ``after_publish``: in the producer (see ``amqpq.producer``).

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
    "task_success",
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
        self.task_success = bool(self._hooks["task_success"])
        self.any_task_hooks = (
            self.task_prerun or self.task_postrun or self.task_failure or self.task_success
        )

    def has(self, name: str) -> bool:
        return bool(self._hooks.get(name))

    def __call__(self, name: str, **kwargs: Any) -> None:
        for hook in self._hooks.get(name, ()):
            try:
                hook(**kwargs)
            except Exception:
                log.exception("hook %s (%r) raised; ignored", name, hook)


def _resolve(app: object, name: str) -> tuple[Callable[..., Any], ...]:
    found: list[Callable[..., Any]] = []
    registry = getattr(app, "hooks", None)
    if isinstance(registry, Mapping):
        found.extend(_callables(registry.get(name)))
    attribute = getattr(app, f"on_{name}", None)
    # The App's own ``on_<name>`` decorators register hooks; they are not hooks themselves.
    if not getattr(attribute, "_amqpq_hook_decorator", False):
        found.extend(f for f in _callables(attribute) if f not in found)
    return tuple(found)


def _callables(value: object) -> list[Callable[..., Any]]:
    if value is None:
        return []
    if callable(value):
        return [value]
    if isinstance(value, list | tuple):
        return [f for f in value if callable(f)]
    return []
