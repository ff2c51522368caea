"""The plan of a workflow: from its nodes to the task messages to send now.

A workflow (docs/workflows.md) is a tree of nodes (:mod:`amqpq.envelope`: task,
chain, group, chord). Nothing keeps its state anywhere but in the messages: each
message carries what follows it (``chain``), the chord it reports to (``chord``)
and its callbacks (``link``, ``link_error``). The caller sends the first tasks;
each worker, once a task succeeded, sends what follows with the result prepended.
Both plan with :func:`launch`, so the caller and the worker agree.

Pure: nodes in, :class:`TaskCall` lists and task ids out. Ids are given to every
task of the tree up front (:func:`freeze`), so the caller can wait for any of them
and a repeat of a chord's body after a crash carries the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from amqpq.envelope import (
    ChainNode,
    ChordMember,
    ChordNode,
    GroupNode,
    Node,
    TaskEnvelope,
    TaskNode,
)

__all__ = [
    "NO_VALUE",
    "Downstream",
    "TaskCall",
    "downstream",
    "final_ids",
    "freeze",
    "launch",
    "shape_of",
    "task_ids",
]


class _NoValue:
    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Final = _NoValue()
"""No parent result to prepend (the first task of a workflow sent by its caller)."""


@dataclass(frozen=True, slots=True)
class TaskCall:
    """One task to send in a batch: ``TaskCall("tasks.add", (3, 4), options={"priority": 5})``."""

    name: str
    args: Iterable[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


def _new_id() -> str:
    return str(uuid.uuid4())


def freeze(node: Node) -> Node:
    """The same tree with an id on every task (``options.task_id``), group and chord."""
    if isinstance(node, TaskNode):
        if node.options.get("task_id"):
            return node
        return node.model_copy(update={"options": {**node.options, "task_id": _new_id()}})
    if isinstance(node, ChainNode):
        return node.model_copy(update={"tasks": [freeze(n) for n in node.tasks]})
    if isinstance(node, GroupNode):
        return node.model_copy(
            update={"tasks": [freeze(n) for n in node.tasks], "id": node.id or _new_id()}
        )
    body = freeze(node.body)
    return node.model_copy(
        update={
            "header": [freeze(n) for n in node.header],
            "body": body,
            # The chord's id is its body's final task id: a repeat of the body after a
            # crash mid-join is recognisable by that id (docs/workflows.md).
            "id": node.id or (final_ids(body) or [_new_id()])[-1],
        }
    )


def task_id(node: TaskNode) -> str:
    value = node.options.get("task_id")
    if not isinstance(value, str):
        raise ValueError(f"workflow task {node.task} has no id (not frozen)")
    return value


def task_ids(node: Node) -> list[str]:
    """Every task id of the tree (not its callbacks), in order."""
    if isinstance(node, TaskNode):
        return [task_id(node)]
    if isinstance(node, ChainNode | GroupNode):
        return [i for n in node.tasks for i in task_ids(n)]
    return [i for n in node.header for i in task_ids(n)] + task_ids(node.body)


def final_ids(node: Node) -> list[str]:
    """The ids whose results are the node's result (one, or a group's members)."""
    if isinstance(node, TaskNode):
        return [task_id(node)]
    if isinstance(node, ChainNode):
        return final_ids(node.tasks[-1]) if node.tasks else []
    if isinstance(node, GroupNode):
        return [i for n in node.tasks for i in final_ids(n)]
    return final_ids(node.body)


def launch(
    node: Node,
    *,
    value: Any = NO_VALUE,
    rest: Sequence[Node] = (),
    chord: ChordMember | None = None,
    common: Mapping[str, Any] | None = None,
) -> list[TaskCall]:
    """The task messages that start ``node`` now.

    ``value`` is prepended to the arguments of the first task(s) (unless immutable);
    ``rest`` follows the node (a chain); ``chord`` is the chord whose header the node
    ends in; ``common`` are send options every call gets (reply_to, parent and root
    ids). Only a task node becomes a message: a chain starts its first node with the
    others as its ``rest``, a group starts every member, a chord every header member.
    """
    common = common or {}
    if isinstance(node, TaskNode):
        args = list(node.args)
        if value is not NO_VALUE and not node.immutable:
            args.insert(0, value)
        options: dict[str, Any] = {**common, **node.options}
        if rest:
            options["chain"] = list(rest)
        if chord is not None:
            options["chord"] = chord
        if node.link:
            options["link"] = list(node.link)
        if node.link_error:
            options["link_error"] = list(node.link_error)
        return [TaskCall(node.task, args, dict(node.kwargs), options)]
    if isinstance(node, ChainNode):
        if not node.tasks:
            if rest:
                return launch(rest[0], value=value, rest=rest[1:], chord=chord, common=common)
            return []
        return launch(
            node.tasks[0],
            value=value,
            rest=[*node.tasks[1:], *rest],
            chord=chord,
            common=common,
        )
    if isinstance(node, GroupNode):
        if rest or chord is not None:
            raise ValueError("a group followed by a task is a chord: build it with chord()")
        calls: list[TaskCall] = []
        for index, member in enumerate(node.tasks):
            calls += launch(
                member, value=value, common={**common, "group_id": node.id, "group_index": index}
            )
        return calls
    return _launch_chord(node, value, rest, chord, common)


def _launch_chord(
    node: ChordNode,
    value: Any,
    rest: Sequence[Node],
    outer: ChordMember | None,
    common: Mapping[str, Any],
) -> list[TaskCall]:
    if not node.header:  # nothing to wait for: the body runs with an empty list
        return launch(node.body, value=[], rest=rest, chord=outer, common=common)
    assert node.id is not None, "chord not frozen"
    size = len(node.header)
    calls: list[TaskCall] = []
    for index, member in enumerate(node.header):
        ref = ChordMember(
            id=node.id,
            index=index,
            size=size,
            body=node.body,
            rest=list(rest),
            outer=outer,
            link_error=node.link_error,
            expires=node.expires,
        )
        calls += launch(
            member,
            value=value,
            chord=ref,
            common={**common, "group_id": node.id, "group_index": index},
        )
    return calls


@dataclass(frozen=True, slots=True)
class Downstream:
    """What a failure leaves without a result: ids answered with the member's own error
    (the rest of its chain), and ids answered with a ``ChordError`` (after its chord)."""

    same_error: list[str]
    chord: ChordMember | None
    """The innermost chord the failure breaks, if any."""
    chord_ids: list[str]


def downstream(rest: Sequence[Node] | None, chord: ChordMember | None) -> Downstream:
    """The ids that will never run once a task with this ``rest`` and ``chord`` failed."""
    same = [i for n in rest or () for i in task_ids(n)]
    ids: list[str] = []
    member = chord
    while member is not None:
        ids += task_ids(member.body) + [i for n in member.rest for i in task_ids(n)]
        member = member.outer
    return Downstream(same_error=same, chord=chord, chord_ids=ids)


def shape_of(envelope: TaskEnvelope) -> dict[str, Any]:
    """Where a task sits in its workflow, for events and inspect (the graph's edges):
    parent and root ids, group id and index, chord id, index and size; empty for a
    task sent on its own."""
    shape: dict[str, Any] = {}
    if envelope.parent_id:
        shape["parent_id"] = envelope.parent_id
    if envelope.root_id:
        shape["root_id"] = envelope.root_id
    if envelope.group_id:
        shape["group_id"] = envelope.group_id
        shape["group_index"] = envelope.group_index
    chord = envelope.chord
    if chord is not None:
        shape["chord_id"] = chord.id
        shape["chord_index"] = chord.index
        shape["chord_size"] = chord.size
    if envelope.chain:
        shape["chain_next"] = len(envelope.chain)
    return shape
