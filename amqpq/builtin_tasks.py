"""The tasks every App has: ``amqpq.map`` and ``amqpq.starmap`` (``task.map(items)``,
``task.starmap(items)``, ``task.chunks(items, n)``; docs/workflows.md).

One message runs the named task for every item, in order, in the worker that took it;
each call's arguments are validated from the task's type hints as for a message of its
own. The preparer routes them as the task they map (``wire``'s names).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from amqpq.errors import ConfigError
from amqpq.registry import Task, TaskOptions, TaskRegistry, TaskSender
from amqpq.wire import MAP_TASK, STARMAP_TASK

__all__ = ["register_builtin_tasks"]


def _runner(registry: TaskRegistry, star: bool) -> Callable[[str, list[Any]], list[Any]]:
    def run(task: str, items: list[Any]) -> list[Any]:
        target = registry.get(task)
        if target.options.bind:
            raise ConfigError(
                f"{task} is a bound task (bind=True): map and starmap call plain tasks"
            )
        results = []
        for item in items:
            args = list(item) if star else [item]
            call_args, call_kwargs = target.parameters.from_wire(args, {})
            value = target.func(*call_args, **call_kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
            results.append(target.parameters.result_to_wire(value))
        return results

    run.__name__ = "starmap" if star else "map"
    return run


async def _awaited(value: Any) -> Any:
    return await value


def register_builtin_tasks(registry: TaskRegistry, sender: TaskSender) -> None:
    for name, star in ((MAP_TASK, False), (STARMAP_TASK, True)):
        registry.add_builtin(Task(_runner(registry, star), TaskOptions(name=name), sender))
