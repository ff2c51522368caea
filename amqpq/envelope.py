"""The wire format: the task envelope and the reply, protocol version 1.

Both are JSON objects in the AMQP body (``content_type: application/json``).
docs/protocol.md is the reference for programs written without this package;
keep the two in step.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

__all__ = [
    "PROTOCOL_VERSION",
    "ChainNode",
    "ChordMember",
    "ChordNode",
    "ErrorInfo",
    "GroupNode",
    "Node",
    "Reply",
    "TaskEnvelope",
    "TaskNode",
    "TaskState",
    "new_task_id",
    "utcnow",
]

PROTOCOL_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_task_id() -> str:
    return str(uuid.uuid4())


class TaskState(StrEnum):
    """Where a task is in its life. The last five are final."""

    PENDING = "PENDING"  # sent, no reply yet (never on the wire)
    STARTED = "STARTED"
    PROGRESS = "PROGRESS"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED, TaskState.EXPIRED, TaskState.REJECTED}
)


class _WireModel(BaseModel):
    # Unknown fields are ignored, not refused: a newer producer may add optional
    # fields within one protocol version and older workers must keep working.
    # Validators are built on first use, not at import: a worker starts consuming sooner
    # and builds them for its first message; validation is the same.
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)


# -- workflows (docs/workflows.md): what runs next travels in the message ---------------------


class TaskNode(_WireModel):
    """One task of a workflow (a signature): name, arguments, send options."""

    kind: Literal["task"] = "task"
    task: str = Field(min_length=1, max_length=255)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    """Send options (queue, routing_key, countdown, priority, task_id, headers, ...)."""
    immutable: bool = False
    """True: the parent's result is not prepended to ``args`` (``task.si()``)."""
    link: list[TaskNode] = Field(default_factory=list)
    """Sent with the task's result prepended once it succeeded."""
    link_error: list[TaskNode] = Field(default_factory=list)
    """Sent with the task's id prepended once it failed for good."""


class ChainNode(_WireModel):
    """Tasks one after the other, each result prepended to the next task's arguments."""

    kind: Literal["chain"] = "chain"
    tasks: list[Node]


class GroupNode(_WireModel):
    """Tasks in parallel."""

    kind: Literal["group"] = "group"
    tasks: list[Node]
    id: str | None = None


class ChordNode(_WireModel):
    """A header group whose results, in header order, are the first argument of the body."""

    kind: Literal["chord"] = "chord"
    header: list[Node]
    body: Node
    id: str | None = None
    """The chord's id; its per-chord queue is named after it."""
    link_error: list[TaskNode] = Field(default_factory=list)
    expires: float = Field(default=86_400.0, gt=0)
    """Seconds the chord's queue outlives the last member result published to it."""


def _node_kind(value: Any) -> str:
    # "kind" may be left out of a task node: a plain signature is {"task": ..., "args": ...}.
    if isinstance(value, dict):
        return str(value.get("kind", "task"))
    return str(getattr(value, "kind", "task"))


Node = Annotated[
    Annotated[TaskNode, Tag("task")]
    | Annotated[ChainNode, Tag("chain")]
    | Annotated[GroupNode, Tag("group")]
    | Annotated[ChordNode, Tag("chord")],
    Discriminator(_node_kind),
]


class ChordMember(_WireModel):
    """What a header member knows of its chord (``chord`` in the envelope)."""

    id: str
    index: int = Field(ge=0)
    size: int = Field(ge=1)
    body: Node
    rest: list[Node] = Field(default_factory=list)
    """What follows the body when the chord is part of a chain."""
    outer: ChordMember | None = None
    """The chord whose header the body (and ``rest``) ends in, if any."""
    link_error: list[TaskNode] = Field(default_factory=list)
    expires: float = Field(default=86_400.0, gt=0)
    reply_to: str | None = None
    """Where the body's replies go (the caller of the workflow), when not the member's own."""


class TaskEnvelope(_WireModel):
    """The body of a task message."""

    protocol: int = PROTOCOL_VERSION
    id: str = Field(min_length=1, max_length=255)
    task: str = Field(min_length=1, max_length=255)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    retries: int = Field(default=0, ge=0)
    eta: datetime | None = None
    expires: datetime | None = None
    parent_id: str | None = None
    root_id: str | None = None
    created_at: datetime | None = None
    result_expires: float | None = Field(default=None, gt=0)
    """Seconds a result store keeps this task's result (optional; older workers ignore it)."""
    shadow: str | None = Field(default=None, min_length=1, max_length=255)
    """A display name for this call in logs, events and inspect (``apply_async(shadow=...)``);
    optional, so workers that predate it ignore it."""
    # Workflows (docs/workflows.md); optional, absent from plain tasks.
    chain: list[Node] | None = None
    """What runs after this task, its result prepended to the first one's arguments."""
    chord: ChordMember | None = None
    """The chord whose header this task (or the chain it ends) belongs to."""
    link: list[TaskNode] | None = None
    link_error: list[TaskNode] | None = None
    group_id: str | None = None
    group_index: int | None = Field(default=None, ge=0)


class ErrorInfo(_WireModel):
    """A failure as it crosses the wire."""

    type: str
    message: str = ""
    traceback: str | None = None


class Reply(_WireModel):
    """The body of a reply message (``correlation_id`` = task id)."""

    protocol: int = PROTOCOL_VERSION
    id: str
    task: str | None = None
    state: TaskState
    result: Any = None
    error: ErrorInfo | None = None
    meta: dict[str, Any] | None = None
    retries: int = 0
    worker: str | None = None
