"""Celery's canvas fields <-> amqpq's workflow nodes (docs/celery.md, "Celery workflows").

A protocol 2 body's ``embed`` names what follows a task as Celery signatures (JSON
objects ``{"task", "args", "kwargs", "options", "subtask_type", "immutable"}``):
``callbacks`` (Celery's ``link``), ``errbacks`` (``link_error``) and ``chain`` (the rest
of a chain, the next task **last**: a Celery worker pops it from the end).

:func:`read_embed` maps them onto amqpq's :class:`~amqpq.envelope.TaskNode` lists, so the
worker's own workflow steps (:mod:`amqpq.worker.workflows`) run them, or raises
:class:`NotMappable` naming what has no amqpq meaning (a chord, a group, an option amqpq
cannot honour). Every node read here carries ``options["protocol"] = "celery"``: the task
that follows is sent as a Celery message again (:func:`write_embed` writes its rest back
as Celery signatures), so it is answered in Celery's ``rpc://`` format and a Celery
worker could run it as well.

Pure: dicts in, nodes out, and back.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from amqpq.envelope import ChainNode, ChordNode, GroupNode, Node, TaskNode

__all__ = [
    "CELERY_PROTOCOL",
    "PROTOCOL_OPTION",
    "NotMappable",
    "read_embed",
    "task_names",
    "write_embed",
]

PROTOCOL_OPTION: Final = "protocol"
"""The send option that makes a workflow's next task a Celery message."""
CELERY_PROTOCOL: Final = "celery"

# Celery signature options amqpq's send options take as they are.
_MAPPED: Final = frozenset(
    {
        "countdown",
        "eta",
        "exchange",
        "expires",
        "headers",
        "ignore_result",
        "priority",
        "queue",
        "reply_to",
        "routing_key",
        "shadow",
        "task_id",
    }
)
# Options set again by the task that sends the signature (parent and root ids, as a Celery
# worker does), or bookkeeping of Celery's result backends and publisher with no effect on
# what runs (group membership, publish retries, stamping).
_SET_BY_SENDER: Final = frozenset(
    {
        "parent_id",
        "root_id",
        "group_id",
        "group_index",
        "retry",
        "retry_policy",
        "stamped_headers",
        "stamps",
    }
)
# Publish options that say what amqpq does anyway (JSON, uncompressed).
_HARMLESS: Final = frozenset({("serializer", None), ("serializer", "json"), ("compression", None)})
# What Celery calls each embed field (for the reasons given).
_NAMES: Final = {"callbacks": "link", "errbacks": "link_error", "chain": "chain"}


class NotMappable(ValueError):
    """A Celery canvas field amqpq cannot run; the message says what and where."""


def read_embed(embed: Mapping[str, Any]) -> dict[str, list[TaskNode]]:
    """The ``link``, ``link_error`` and ``chain`` envelope fields of a protocol 2 ``embed``
    (only those present); :class:`NotMappable` for what cannot map."""
    if embed.get("chord"):
        raise NotMappable(
            "embed.chord (Celery's chord: this task is a member of a chord's header) cannot "
            "map: a Celery chord joins in Celery's result backend, which amqpq workers do "
            "not write; run the chord on Celery workers or send it as an amqpq chord"
        )
    fields: dict[str, list[TaskNode]] = {}
    callbacks = _signatures(embed, "callbacks")
    if callbacks:
        fields["link"] = [_link(s, f"embed.callbacks[{i}]") for i, s in enumerate(callbacks)]
    errbacks = _signatures(embed, "errbacks")
    if errbacks:
        fields["link_error"] = [_link(s, f"embed.errbacks[{i}]") for i, s in enumerate(errbacks)]
    chain = _signatures(embed, "chain")
    if chain:
        # Celery keeps the next task last; amqpq's chain lists it first.
        fields["chain"] = [
            _node(sig, f"embed.chain[{index}]", chained=True)
            for index, sig in reversed(list(enumerate(chain)))
        ]
    return fields


def _signatures(embed: Mapping[str, Any], field: str) -> list[Any]:
    value = embed.get(field)
    if not value:
        return []
    if not isinstance(value, list):
        raise NotMappable(
            f"embed.{field} (Celery's {_NAMES[field]}) is {type(value).__name__}, "
            "not a list of signatures"
        )
    return value


def _link(sig: Any, where: str) -> TaskNode:
    node = _node(sig, where, chained=False)
    if "reply_to" in node.options and "ignore_result" not in node.options:
        # A frozen callback (its id and reply_to set by its caller) is answered there.
        node = node.model_copy(update={"options": {**node.options, "ignore_result": False}})
    return node


def _node(sig: Any, where: str, *, chained: bool) -> TaskNode:
    """One Celery signature -> a task node; ``chained``: a chain member, which needs an id
    (Celery's caller froze it) so a failure can answer it."""
    if not isinstance(sig, Mapping):
        raise NotMappable(f"{where} is {type(sig).__name__}, not a Celery signature")
    task = sig.get("task")
    kind = sig.get("subtask_type")
    if kind is not None:
        raise NotMappable(
            f"{where} is a Celery {kind} ({task!r}), which cannot map: amqpq workers run "
            "chains, link and link_error of plain task signatures sent by Celery"
        )
    if not isinstance(task, str) or not task:
        raise NotMappable(f"{where} names no task")
    args, kwargs = sig.get("args") or [], sig.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise NotMappable(f"{where} ({task!r}): args must be a list and kwargs an object")
    raw_options = sig.get("options") or {}
    if not isinstance(raw_options, Mapping):
        raise NotMappable(f"{where} ({task!r}): options must be an object")
    options = _options(raw_options, f"{where} ({task!r})")
    if chained and not options.get("task_id"):
        options["task_id"] = str(uuid.uuid4())
    link = [
        _link(s, f"{where}.options.link[{i}]")
        for i, s in enumerate(_listed(raw_options.get("link")))
    ]
    link_error = [
        _link(s, f"{where}.options.link_error[{i}]")
        for i, s in enumerate(_listed(raw_options.get("link_error")))
    ]
    return TaskNode(
        task=task,
        args=args,
        kwargs=kwargs,
        options=options,
        immutable=bool(sig.get("immutable")),
        link=link,
        link_error=link_error,
    )


def _listed(value: Any) -> list[Any]:
    if not value:
        return []
    return value if isinstance(value, list) else [value]


def _options(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    options: dict[str, Any] = {PROTOCOL_OPTION: CELERY_PROTOCOL}
    refused: list[str] = []
    for key, value in raw.items():
        if key in ("link", "link_error") or key in _SET_BY_SENDER:
            continue
        if key in _MAPPED:
            if value is not None:
                options[key] = _untag(value)
        elif not (isinstance(value, str | None) and (key, value) in _HARMLESS):
            refused.append(f"{key}={value!r:.40}")
    if refused:
        raise NotMappable(
            f"{where}: option(s) {', '.join(sorted(refused))} cannot map to amqpq's send options"
        )
    for key in ("queue", "exchange", "routing_key", "reply_to", "task_id", "shadow"):
        if key in options and not isinstance(options[key], str):
            raise NotMappable(f"{where}: option {key} must be a name, got {options[key]!r:.40}")
    if "queue" in options and ("exchange" in options or "routing_key" in options):
        # amqpq takes a queue or an exchange and routing key, never both.
        options.pop("exchange", None)
        options.pop("routing_key", None)
    return options


def _untag(value: Any) -> Any:
    """kombu's JSON writes a datetime as ``{"__type__": "datetime", "__value__": iso}``."""
    if isinstance(value, dict) and value.get("__type__") == "datetime":
        return value.get("__value__")
    return value


def task_names(nodes: Sequence[TaskNode]) -> list[str]:
    """The task names of nodes and of their callbacks, in order."""
    names: list[str] = []
    for node in nodes:
        names.append(node.task)
        names += task_names(node.link) + task_names(node.link_error)
    return names


# -- amqpq nodes -> Celery signatures ---------------------------------------------------------


def write_embed(
    *,
    chain: Sequence[Node] | None,
    link: Sequence[TaskNode] | None,
    link_error: Sequence[TaskNode] | None,
    chord: object | None,
    reply_to: str | None,
) -> dict[str, Any]:
    """The ``embed`` of a Celery message for an envelope's workflow fields: the chain's
    members, next task last, answered at ``reply_to`` as Celery's caller freezes them.

    A group or chord has no place in a Celery message sent by amqpq: ``ValueError``.
    """
    if chord is not None:
        raise ValueError("a chord member cannot be sent in Celery's message format")
    members = [_signature(n, reply_to) for n in reversed(_flat(chain or ()))]
    return {
        "callbacks": [_signature(n, None) for n in link] if link else None,
        "errbacks": [_signature(n, None) for n in link_error] if link_error else None,
        "chain": members or None,
        "chord": None,
    }


def _flat(nodes: Sequence[Node]) -> list[TaskNode]:
    flat: list[TaskNode] = []
    for node in nodes:
        if isinstance(node, TaskNode):
            flat.append(node)
        elif isinstance(node, ChainNode):
            flat += _flat(node.tasks)
        else:
            kind = "group" if isinstance(node, GroupNode) else "chord"
            assert isinstance(node, GroupNode | ChordNode)
            raise ValueError(f"a chain with a {kind} cannot be sent in Celery's message format")
    return flat


def _signature(node: TaskNode, reply_to: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in node.options.items():
        if key in _MAPPED:
            options[key] = value.isoformat() if isinstance(value, datetime) else value
    if reply_to and "reply_to" not in options and not options.get("ignore_result"):
        options["reply_to"] = reply_to
    if node.link:
        options["link"] = [_signature(n, None) for n in node.link]
    if node.link_error:
        options["link_error"] = [_signature(n, None) for n in node.link_error]
    return {
        "task": node.task,
        "args": list(node.args),
        "kwargs": dict(node.kwargs),
        "options": options,
        "subtask_type": None,
        "immutable": node.immutable,
    }
