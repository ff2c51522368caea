"""A window's frames are byte for byte what aiormq's ``basic_publish`` writes per message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, cast

import aiormq
import pytest
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.transport.aio_mapping import to_amqp_properties
from amqpq.transport.aio_window import WINDOWS_SUPPORTED, _frames

MAX_CONTENT = 100


def _aiormq_way(message: OutgoingMessage, number: int) -> bytes:
    """The frames Channel.basic_publish builds for ``message``."""
    body = message.body
    chunks = [body[i : i + MAX_CONTENT] for i in range(0, len(body), MAX_CONTENT)]
    frames: list[Any] = [
        spec.Basic.Publish(
            exchange=message.exchange,
            routing_key=message.routing_key,
            mandatory=message.mandatory,
            immediate=False,
        ),
        ContentHeader(properties=to_amqp_properties(message), body_size=len(body)),
        *(ContentBody(c) for c in chunks),
    ]
    return ChannelFrame.marshall(channel_number=number, frames=frames).payload


def _channel(number: int) -> aiormq.Channel:
    return cast(aiormq.Channel, SimpleNamespace(number=number, max_content_size=MAX_CONTENT))


MOMENT = datetime(2026, 12, 3, 14, 33, 31, tzinfo=UTC)
PROPERTIES = [
    MessageProperties(
        message_id="id-1",
        correlation_id="id-1",
        timestamp=MOMENT,
        type="bench.noop",
        headers={"amqpq-protocol": 1, "amqpq-task": "bench.noop"},
    ),
    MessageProperties(
        message_id="id-2",
        correlation_id="other",
        reply_to="amq.rabbitmq.reply-to",
        priority=7,
        expiration="60000",
        delivery_mode=1,
        timestamp=MOMENT.astimezone(timezone(timedelta(hours=2))),
        headers={"flag": True, "n": 1, "big": 2**40, "neg": -3, "f": 0.5, "z": -0.0},
    ),
    MessageProperties(
        message_id="id-3",
        content_type="",
        content_encoding=None,
        app_id=None,
        headers={"nested": {"a": [1, "x", None]}, "when": MOMENT, "none": None},
    ),
    MessageProperties(message_id="id-4", timestamp=datetime(2026, 1, 1), headers={}),
    MessageProperties(message_id="id-5", type="ünïcode", headers={"clé": "välue"}),
]


@pytest.mark.skipif(not WINDOWS_SUPPORTED, reason="this aiormq publishes one message at a time")
@pytest.mark.parametrize("properties", PROPERTIES)
@pytest.mark.parametrize("body", [b"", b"x", b"y" * 99, b"z" * 100, b"w" * 250])
def test_a_windows_frames_are_basic_publishs(properties: MessageProperties, body: bytes) -> None:
    message = OutgoingMessage(body, properties, "tasks", "default")
    cache: dict[Any, bytes] = {}
    publish_frames: dict[tuple[str, str, bool], bytes] = {}
    # twice with the same caches: the second time from the cached encodings
    for _ in range(2):
        assert _frames(_channel(3), message, publish_frames, cache) == _aiormq_way(message, 3)
    # and values that are equal but encode apart never share a cached encoding
    other = OutgoingMessage(
        body,
        MessageProperties(message_id="id-9", priority=True, headers={"n": True, "z": 0.0}),
        "tasks",
        "default",
        mandatory=False,
    )
    assert _frames(_channel(3), other, publish_frames, cache) == _aiormq_way(other, 3)


@pytest.mark.skipif(not WINDOWS_SUPPORTED, reason="this aiormq publishes one message at a time")
def test_what_pamqp_refuses_is_refused_with_pamqps_error() -> None:
    message = OutgoingMessage(b"", MessageProperties(message_id="x", delivery_mode=3), "e", "k")
    with pytest.raises(ValueError, match="Invalid delivery_mode value: 3"):
        _frames(_channel(1), message, {}, {})
    message = OutgoingMessage(b"", MessageProperties(message_id="x", priority=300), "e", "k")
    with pytest.raises(Exception) as raised:  # noqa: PT011  # whatever pamqp raises
        _frames(_channel(1), message, {}, {})
    with pytest.raises(type(raised.value), match=str(raised.value)):
        _aiormq_way(message, 1)
