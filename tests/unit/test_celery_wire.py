"""Celery's protocol 2 and rpc:// replies beside amqpq's format (amqpq/celery_wire.py),
without a broker: what is read, what is refused and why, and the replies both ways."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from amqpq.celery_wire import (
    CeleryTaskEnvelope,
    Unsupported,
    celery_retry_headers,
    decode_any_reply,
    encode_celery_reply,
    encode_celery_task,
    is_celery_message,
    looks_like_celery_protocol_1,
    read_celery_task,
)
from amqpq.codec import MessageProperties
from amqpq.envelope import ErrorInfo, Reply, TaskEnvelope, TaskState
from amqpq.errors import DecodeError

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def celery_message(
    body: object = ([1, 2], {"z": 3}, EMBED),
    content_type: str = "application/json",
    **headers: object,
) -> tuple[bytes, MessageProperties]:
    all_headers: dict[str, object] = {"task": "tasks.add", "id": "t-1", "retries": 0, **headers}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, MessageProperties(
        correlation_id="t-1", content_type=content_type, headers=all_headers
    )


def test_a_celery_message_is_told_by_its_task_and_id_headers_without_amqpqs_own() -> None:
    assert is_celery_message({"task": "a", "id": "1"})
    assert not is_celery_message({"task": "a", "id": "1", "amqpq-protocol": 1})
    assert not is_celery_message({"amqpq-task": "a"})


def test_a_protocol_2_message_reads_as_an_envelope_with_its_header_fields() -> None:
    body, properties = celery_message(
        eta="2030-01-01T00:00:00+00:00",
        expires="2030-01-02T00:00:00+00:00",
        retries=2,
        timelimit=[30, 10],
        root_id="r",
        parent_id="p",
        shadow="add:1",
        ignore_result=True,
    )

    envelope = read_celery_task(body, properties)

    assert isinstance(envelope, CeleryTaskEnvelope)
    assert (envelope.id, envelope.task, envelope.args, envelope.kwargs) == (
        "t-1",
        "tasks.add",
        [1, 2],
        {"z": 3},
    )
    assert envelope.eta == datetime(2030, 1, 1, tzinfo=UTC)
    assert (envelope.retries, envelope.root_id, envelope.parent_id) == (2, "r", "p")
    # Celery writes [hard, soft]
    assert (envelope.time_limit, envelope.soft_time_limit) == (30.0, 10.0)
    assert envelope.shadow == "add:1"
    assert envelope.ignore_result


@pytest.mark.parametrize(
    ("content_type", "named"),
    [
        ("application/x-python-serialize", "pickle"),
        ("application/x-yaml", "yaml"),
        ("application/x-msgpack", "msgpack"),
    ],
)
def test_other_serializers_are_refused_unread(content_type: str, named: str) -> None:
    body, properties = celery_message(b"\x80\x04not read", content_type=content_type)

    refused = read_celery_task(body, properties)

    assert isinstance(refused, Unsupported)
    assert refused.reason == "unsupported_serializer"
    assert named in refused.message


def test_a_compressed_message_is_refused() -> None:
    body, properties = celery_message(compression="application/x-gzip")

    refused = read_celery_task(body, properties)

    assert isinstance(refused, Unsupported)
    assert "compressed" in refused.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chord", {"task": "tasks.tsum", "options": {}}),
        ("chain", [{"task": "x", "subtask_type": "group", "kwargs": {"tasks": []}}]),
        ("callbacks", [{"task": "x", "options": {"time_limit": 5}}]),
    ],
)
def test_a_canvas_field_that_cannot_map_is_refused_by_name(field: str, value: object) -> None:
    body, properties = celery_message(([1, 2], {}, {**EMBED, field: value}))

    refused = read_celery_task(body, properties)

    assert isinstance(refused, Unsupported)
    assert refused.reason == "unsupported_workflow"
    assert f"embed.{field}" in refused.message


def test_a_celery_chain_and_callbacks_are_read_as_the_envelope_s_workflow_fields() -> None:
    chain = [
        {"task": "tasks.c", "options": {"task_id": "c", "reply_to": "oid"}, "immutable": True},
        {"task": "tasks.b", "options": {"task_id": "b", "reply_to": "oid"}},
    ]
    callbacks = [{"task": "tasks.log", "args": ["x"]}]
    body, properties = celery_message(([1], {}, {**EMBED, "chain": chain, "callbacks": callbacks}))

    read = read_celery_task(body, properties)

    assert isinstance(read, CeleryTaskEnvelope)
    assert [(n.task, n.options["task_id"]) for n in read.chain or []] == [  # type: ignore[union-attr]
        ("tasks.b", "b"),
        ("tasks.c", "c"),
    ]
    assert [n.task for n in read.link or []] == ["tasks.log"]


@pytest.mark.parametrize("body", [b"{not json", json.dumps({"args": []}).encode(), b"[[], {}]"])
def test_a_body_that_is_not_args_kwargs_embed_is_a_decode_error(body: bytes) -> None:
    raw, properties = celery_message(body)

    with pytest.raises(DecodeError, match=r"tasks\.add"):
        read_celery_task(raw, properties)


def test_protocol_1_is_recognised_by_keys_an_envelope_never_has() -> None:
    assert looks_like_celery_protocol_1({"task": "a", "id": "1", "utc": True, "taskset": None})
    assert not looks_like_celery_protocol_1({"task": "a", "id": "1", "args": []})


def test_a_retry_copy_carries_celerys_count_and_eta() -> None:
    eta = datetime(2030, 1, 1, tzinfo=UTC)

    headers = celery_retry_headers({"task": "a", "id": "1", "retries": 1}, retries=2, eta=eta)

    assert headers == {"task": "a", "id": "1", "retries": 2, "eta": eta.isoformat()}


def test_an_amqpq_task_for_a_celery_worker_is_a_protocol_2_message() -> None:
    envelope = TaskEnvelope(id="t-9", task="legacy.mul", args=[2, 3], kwargs={"k": 1})

    message = encode_celery_task(
        envelope, exchange="celery", routing_key="legacy", reply_to="amq.rabbitmq.reply-to"
    )

    assert json.loads(message.body) == [[2, 3], {"k": 1}, EMBED]
    headers = message.properties.headers
    assert (headers["task"], headers["id"], headers["root_id"]) == ("legacy.mul", "t-9", "t-9")
    assert "amqpq-protocol" not in headers
    assert message.properties.correlation_id == "t-9"
    assert message.properties.content_type == "application/json"


@pytest.mark.parametrize(
    ("state", "error", "status", "exc_type", "exc_module"),
    [
        (
            TaskState.FAILURE,
            ErrorInfo(type="ValueError", message="m"),
            "FAILURE",
            "ValueError",
            "builtins",
        ),
        (TaskState.FAILURE, ErrorInfo(type="MyError", message="m"), "FAILURE", "MyError", None),
        (
            TaskState.REJECTED,
            ErrorInfo(type="ArgumentsError", message="m"),
            "FAILURE",
            "ArgumentsError",
            None,
        ),
        (
            TaskState.EXPIRED,
            ErrorInfo(type="TaskExpiredError", message="m"),
            "REVOKED",
            "TaskRevokedError",
            "celery.exceptions",
        ),
        (TaskState.RETRY, None, "RETRY", "Retry", "celery.exceptions"),
    ],
)
def test_a_failure_reply_is_an_exception_celerys_caller_rebuilds(
    state: TaskState, error: ErrorInfo | None, status: str, exc_type: str, exc_module: str | None
) -> None:
    reply = Reply(id="t-1", state=state, error=error)

    message = encode_celery_reply(reply, reply_to="celery-oid", correlation_id="t-1")

    body = json.loads(message.body)
    assert body["status"] == status
    assert body["result"]["exc_type"] == exc_type
    assert body["result"]["exc_module"] == exc_module
    assert (message.exchange, message.routing_key) == ("", "celery-oid")
    assert message.properties.correlation_id == "t-1"


def test_a_success_reply_round_trips_through_celerys_format() -> None:
    message = encode_celery_reply(
        Reply(id="t-1", state=TaskState.SUCCESS, result={"total": 7}),
        reply_to="amq.rabbitmq.reply-to.x",
        correlation_id="t-1",
    )

    reply = decode_any_reply(message.body)

    assert (reply.id, reply.state, reply.result) == ("t-1", TaskState.SUCCESS, {"total": 7})


def test_a_celery_workers_failure_and_custom_state_read_as_amqpq_replies() -> None:
    failure = {
        "task_id": "t",
        "status": "FAILURE",
        "result": {"exc_type": "KeyError", "exc_message": ["missing"], "exc_module": "builtins"},
        "traceback": "Traceback ...",
    }
    custom = {"task_id": "t", "status": "RESIZING", "result": {"done": 3}}

    failed = decode_any_reply(json.dumps(failure).encode())
    progress = decode_any_reply(json.dumps(custom).encode())

    assert failed.state is TaskState.FAILURE
    assert failed.error == ErrorInfo(type="KeyError", message="missing", traceback="Traceback ...")
    assert progress.state is TaskState.PROGRESS
    assert progress.meta == {"done": 3, "state": "RESIZING"}


def test_a_reply_in_neither_format_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_any_reply(b'{"hello": 1}')
