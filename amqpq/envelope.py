"""The wire format: the task envelope and the reply, protocol version 1.

Both are JSON objects in the AMQP body (``content_type: application/json``).
docs/protocol.md is the reference for programs written without this package;
keep the two in step.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PROTOCOL_VERSION",
    "ErrorInfo",
    "Reply",
    "TaskEnvelope",
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
