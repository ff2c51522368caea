"""Celery's wire format beside amqpq's own: message protocol 2 and the ``rpc://`` replies.

Celery producers and workers speak to amqpq through this module only (docs/celery.md
has the mapping field by field):

- a Celery task message -> a :class:`CeleryTaskEnvelope` the worker runs like any other
  (:func:`read_celery_task`), its canvas fields (``link``, ``link_error``, ``chain``) as
  amqpq workflow fields (:mod:`amqpq.celery_canvas`), or an :class:`Unsupported` reason
  to dead-letter it (pickle and the other serializers, compression, protocol 1, a chord,
  canvas fields that do not map);
- amqpq's :class:`~amqpq.envelope.Reply` -> the message Celery's ``rpc://`` backend reads
  (:func:`encode_celery_reply`), and back (:func:`decode_any_reply`);
- an amqpq task for a ``protocol: celery`` route -> a protocol 2 message
  (:func:`encode_celery_task`), and a retry copy of a Celery message
  (:func:`celery_retry_headers`).

JSON only: a message in any other serializer is refused unread, never unpickled.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from amqpq.celery_canvas import NotMappable, read_embed, write_embed
from amqpq.codec import CONTENT_TYPE, MessageProperties, OutgoingMessage, decode_reply
from amqpq.envelope import ErrorInfo, Reply, TaskEnvelope, TaskState
from amqpq.errors import ConfigError, DecodeError
from amqpq.wire import (
    CELERY_HEADER_ETA,
    CELERY_HEADER_ID,
    CELERY_HEADER_RETRIES,
    CELERY_HEADER_TASK,
    HEADER_PROTOCOL,
    is_direct_reply_to,
)

__all__ = [
    "CeleryTaskEnvelope",
    "Unsupported",
    "celery_retry_headers",
    "decode_any_reply",
    "encode_celery_reply",
    "encode_celery_task",
    "is_celery_message",
    "looks_like_celery_protocol_1",
    "read_celery_task",
    "serializer_of",
]

# Content types of Celery's other serializers: refused unread (never unpickled).
_SERIALIZERS: Final = {
    "application/x-python-serialize": "pickle",
    "application/x-yaml": "yaml",
    "application/x-msgpack": "msgpack",
}
# Celery's final states: a Celery caller waits until it reads one of these.
_CELERY_STATUS: Final = {
    TaskState.STARTED: "STARTED",
    TaskState.PROGRESS: "PROGRESS",
    TaskState.RETRY: "RETRY",
    TaskState.SUCCESS: "SUCCESS",
    TaskState.FAILURE: "FAILURE",
    TaskState.REVOKED: "REVOKED",
    TaskState.EXPIRED: "REVOKED",  # Celery marks an expired task revoked
    TaskState.REJECTED: "FAILURE",  # Celery has no final "rejected": the caller must see it
}
_READY: Final = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
_EXCEPTION_STATES: Final = frozenset({"FAILURE", "RETRY", "REVOKED"})
# Error types a Celery caller has in ``celery.exceptions`` (so ``except TaskRevokedError``
# catches them there); any other non-builtin type is rebuilt by name on the caller's side.
_CELERY_EXCEPTIONS: Final = frozenset(
    {
        "TaskRevokedError",
        "TimeLimitExceeded",
        "SoftTimeLimitExceeded",
        "Retry",
        "MaxRetriesExceededError",
    }
)
_FROM_CELERY_STATES: Final = {
    "STARTED": TaskState.STARTED,
    "RECEIVED": TaskState.STARTED,
    "RETRY": TaskState.RETRY,
    "SUCCESS": TaskState.SUCCESS,
    "FAILURE": TaskState.FAILURE,
    "REVOKED": TaskState.REVOKED,
    "REJECTED": TaskState.REJECTED,
}


class CeleryTaskEnvelope(TaskEnvelope):
    """A Celery protocol 2 message read as an envelope, with the per-call options Celery
    puts in headers (``timelimit``, ``ignore_result``)."""

    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool = False


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A Celery message amqpq will not run: dead-lettered with ``reason`` and ``message``."""

    reason: str  # unsupported_serializer, unsupported_protocol, unsupported_workflow
    message: str
    error_type: str = "UnsupportedCeleryMessage"


def serializer_of(content_type: str | None) -> str | None:
    """The name of a Celery serializer amqpq refuses (pickle, yaml, msgpack), else None."""
    return _SERIALIZERS.get(content_type or "")


def is_celery_message(headers: Mapping[str, Any]) -> bool:
    """A Celery protocol 2 message: its headers name the task and its id, amqpq's do not."""
    return (
        CELERY_HEADER_TASK in headers
        and CELERY_HEADER_ID in headers
        and HEADER_PROTOCOL not in headers
    )


def looks_like_celery_protocol_1(raw: Mapping[str, Any]) -> bool:
    """A protocol 1 body (Celery 3, or ``task_protocol = 1``): the task fields in a JSON
    object, with keys an amqpq envelope never has."""
    return "task" in raw and "id" in raw and ("utc" in raw or "taskset" in raw)


def _text(value: Any) -> Any:
    # AMQP long strings may reach us as bytes, depending on the client library.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def read_celery_task(
    body: bytes, properties: MessageProperties
) -> CeleryTaskEnvelope | Unsupported:
    """A protocol 2 message -> its envelope; :class:`Unsupported` for what amqpq will not
    run; :class:`DecodeError` for a body that is not a protocol 2 JSON body."""
    headers = properties.headers
    task = _text(headers.get(CELERY_HEADER_TASK))
    task_id = _text(headers.get(CELERY_HEADER_ID))
    which = f"Celery task {task!r} id={task_id}"
    content_type = properties.content_type or ""
    if content_type != CONTENT_TYPE:
        serializer = _SERIALIZERS.get(content_type, content_type or "no content type")
        return Unsupported(
            "unsupported_serializer",
            f"{which} is serialized as {serializer} ({content_type or '-'}); amqpq reads JSON "
            "only and never unpickles: send it with task_serializer='json'",
        )
    compression = _text(headers.get("compression"))
    if compression:
        return Unsupported(
            "unsupported_serializer",
            f"{which} is compressed ({compression}); amqpq reads uncompressed JSON only: "
            "send it without task_compression",
        )
    try:
        raw = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{which}: body is not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{which}: body is not JSON: {exc.msg}") from exc
    if not (
        isinstance(raw, list)
        and len(raw) == 3
        and isinstance(raw[0], list)
        and isinstance(raw[1], dict)
        and isinstance(raw[2], dict | None)
    ):
        raise DecodeError(
            f"{which}: a Celery protocol 2 body is [args, kwargs, embed], got {body[:80]!r}"
        )
    args, kwargs, embed = raw
    try:
        workflow = read_embed(embed or {})
    except NotMappable as exc:
        return Unsupported(
            "unsupported_workflow",
            f"{which}: {exc}; dead-lettered rather than run without it",
        )
    hard, soft = _time_limits(headers.get("timelimit"))
    try:
        return CeleryTaskEnvelope.model_validate(
            {
                "id": task_id,
                "task": task,
                "args": args,
                "kwargs": kwargs,
                "retries": headers.get(CELERY_HEADER_RETRIES) or 0,
                "eta": _text(headers.get(CELERY_HEADER_ETA)),
                "expires": _text(headers.get("expires")),
                "parent_id": _text(headers.get("parent_id")),
                "root_id": _text(headers.get("root_id")),
                "shadow": _text(headers.get("shadow")) or None,
                "time_limit": hard,
                "soft_time_limit": soft,
                "ignore_result": bool(headers.get("ignore_result")),
                **workflow,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "message"
        raise DecodeError(f"{which}: invalid Celery message: {where}: {first['msg']}") from exc


def _time_limits(value: Any) -> tuple[float | None, float | None]:
    """Celery's ``timelimit`` header: ``[hard, soft]`` seconds, each may be null."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None, None
    hard, soft = (
        float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else None
        for v in value
    )
    return hard, soft


def celery_retry_headers(
    headers: Mapping[str, Any], *, retries: int, eta: datetime
) -> dict[str, Any]:
    """The headers of a Celery message's retry copy: the count and eta Celery would write."""
    return {**headers, CELERY_HEADER_RETRIES: retries, CELERY_HEADER_ETA: eta.isoformat()}


# -- amqpq producers -> Celery workers ------------------------------------------------------


def encode_celery_task(
    envelope: TaskEnvelope,
    *,
    exchange: str,
    routing_key: str,
    reply_to: str | None = None,
    priority: int | None = None,
    headers: Mapping[str, Any] | None = None,
) -> OutgoingMessage:
    """A protocol 2 JSON message a Celery worker runs (a ``protocol: celery`` route, or the
    next task of a Celery workflow); the envelope's chain and callbacks become its
    ``embed`` (a chord, or a group in a chain, cannot: :class:`ConfigError`)."""
    celery_headers: dict[str, Any] = {
        **(headers or {}),
        "lang": "py",
        CELERY_HEADER_TASK: envelope.task,
        CELERY_HEADER_ID: envelope.id,
        "shadow": envelope.shadow,
        CELERY_HEADER_ETA: envelope.eta.isoformat() if envelope.eta else None,
        "expires": envelope.expires.isoformat() if envelope.expires else None,
        "group": None,
        "group_index": None,
        CELERY_HEADER_RETRIES: envelope.retries,
        "timelimit": [None, None],
        "root_id": envelope.root_id or envelope.id,
        "parent_id": envelope.parent_id,
        "argsrepr": repr(tuple(envelope.args)),
        "kwargsrepr": repr(envelope.kwargs),
        "origin": f"amqpq{os.getpid()}@{socket.gethostname()}",
        "ignore_result": reply_to is None,
    }
    try:
        embed = write_embed(
            chain=envelope.chain,
            link=envelope.link,
            link_error=envelope.link_error,
            chord=envelope.chord,
            reply_to=reply_to,
        )
    except ValueError as exc:
        raise ConfigError(f"{envelope.task} id={envelope.id}: {exc}") from exc
    body = json.dumps(
        [envelope.args, envelope.kwargs, embed], separators=(",", ":"), ensure_ascii=False
    ).encode()
    return OutgoingMessage(
        body=body,
        exchange=exchange,
        routing_key=routing_key,
        properties=MessageProperties(
            # Celery reads the id from headers; the sync producer matches a returned
            # (unroutable) message to its publish by message_id.
            message_id=envelope.id,
            correlation_id=envelope.id,
            reply_to=reply_to,
            priority=priority,
            app_id=None,
            headers=celery_headers,
        ),
    )


# -- replies --------------------------------------------------------------------------------


def _exception(error: ErrorInfo | None, state: TaskState) -> dict[str, Any]:
    """An error as Celery's JSON result backends write it (type, message args, module)."""
    if error is None:
        error = (
            ErrorInfo(type="Retry", message="retry")
            if state is TaskState.RETRY
            else ErrorInfo(type="TaskRevokedError", message="revoked")
        )
    kind, message = error.type, error.message
    if state is TaskState.EXPIRED:
        kind, message = "TaskRevokedError", f"expired: {message}"
    if kind in _CELERY_EXCEPTIONS:
        module: str | None = "celery.exceptions"
    else:
        found = getattr(builtins, kind, None)
        builtin = isinstance(found, type) and issubclass(found, BaseException)
        module = "builtins" if builtin else None
    return {"exc_type": kind, "exc_message": [message], "exc_module": module}


def encode_celery_reply(reply: Reply, *, reply_to: str, correlation_id: str) -> OutgoingMessage:
    """A reply as Celery's ``rpc://`` backend reads it: on the default exchange to
    ``reply_to``, ``correlation_id`` = the task id, a JSON body with ``status`` and
    ``result`` (the value, an exception, or the progress meta)."""
    status = _CELERY_STATUS.get(reply.state, reply.state.value)
    result: Any
    if status in _EXCEPTION_STATES:
        result = _exception(reply.error, reply.state)
    elif status == "SUCCESS":
        result = reply.result
    else:
        result = dict(reply.meta or {})
        custom = result.pop("state", None) if status == "PROGRESS" else None
        if isinstance(custom, str):  # update_state(state="RESIZING"): Celery shows that name
            status = custom
    body = {
        "task_id": reply.id,
        "status": status,
        "result": result,
        "traceback": reply.error.traceback if reply.error is not None else None,
        "children": [],
        "date_done": datetime.now(UTC).isoformat() if status in _READY else None,
    }
    return OutgoingMessage(
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        exchange="",
        routing_key=reply_to,
        mandatory=False,
        properties=MessageProperties(
            correlation_id=correlation_id,
            app_id=None,
            # Celery's rpc replies are transient too; a durable result queue is amqpq's only.
            delivery_mode=1 if is_direct_reply_to(reply_to) else 2,
        ),
    )


def decode_any_reply(body: bytes) -> Reply:
    """An amqpq reply, or a Celery worker's ``rpc://`` reply read as one."""
    try:
        return decode_reply(body)
    except DecodeError as amqpq_error:
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise amqpq_error from None
        if not (isinstance(raw, dict) and "status" in raw and "task_id" in raw):
            raise
        return _reply_from_celery(raw)


def _reply_from_celery(raw: dict[str, Any]) -> Reply:
    status = str(raw["status"])
    result = raw.get("result")
    state = _FROM_CELERY_STATES.get(status, TaskState.PROGRESS)
    values: dict[str, Any] = {"id": str(raw["task_id"]), "state": state}
    if status in _EXCEPTION_STATES or state is TaskState.REJECTED:
        values["error"] = _error_from_celery(result, raw.get("traceback"))
    elif state is TaskState.SUCCESS:
        values["result"] = result
    else:  # STARTED and the task's own states (update_state): the meta, and the state's name
        meta = dict(result) if isinstance(result, dict) else {"value": result}
        if state is TaskState.PROGRESS and status != "PROGRESS":
            meta["state"] = status
        values["meta"] = meta
    try:
        return Reply.model_validate(values)
    except ValidationError as exc:
        raise DecodeError(f"invalid Celery reply: {exc.errors()[0]['msg']}") from exc


def _error_from_celery(result: Any, traceback: Any) -> ErrorInfo:
    text = traceback if isinstance(traceback, str) else None
    if not isinstance(result, dict):
        return ErrorInfo(type="Exception", message=str(result), traceback=text)
    args = result.get("exc_message")
    if isinstance(args, list | tuple):
        message = str(args[0]) if len(args) == 1 else ", ".join(str(a) for a in args)
    else:
        message = "" if args is None else str(args)
    return ErrorInfo(
        type=str(result.get("exc_type") or "Exception"), message=message, traceback=text
    )
