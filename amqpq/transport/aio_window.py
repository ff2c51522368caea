"""A window of confirmed, mandatory publishes written to aiormq's channel as one frame.

aiormq's ``Channel.basic_publish`` costs, per message, a coroutine, a lock round, a
``ChannelFrame`` and one socket write in the connection's writer task (the writer
writes each queued frame on its own). A bulk send has its messages ready at once:
:func:`publish_window` marshals them into one payload and queues it under the
channel's lock, with each message's delivery tag, confirmation future and message
id registered exactly where ``basic_publish`` registers them. aiormq's own reader
then settles the futures as before: acks, nacks, returns (found by message id) and
a closed channel (its futures are rejected with the reason).

:data:`WINDOWS_SUPPORTED` says whether the installed aiormq has everything this
relies on; without it, callers publish one message at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import importlib.metadata
import struct
from collections.abc import Callable, Sequence
from typing import Any

import aiormq
import pamqp.encode
import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.header import ContentHeader

from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.transport.aio_mapping import to_amqp_properties

__all__ = ["WINDOWS_SUPPORTED", "publish_window"]


def _supported() -> bool:
    # What follows relies on aiormq's channel internals as they are in aiormq 7 (the
    # confirmations and message ids basic_publish registers, the reader that settles
    # them, the channel lock): any other version publishes one message at a time.
    try:
        major = int(importlib.metadata.version("aiormq").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    channel = aiormq.Channel
    fields = {f.name for f in dataclasses.fields(ChannelFrame)}
    return (
        major == 7
        and {"payload", "should_close"} <= fields
        and isinstance(getattr(channel, "lock", None), property)
        and all(
            callable(getattr(channel, name, None))
            for name in ("create_future", "_on_confirm_frame", "_on_return_frame")
        )
        and "confirmations" in getattr(channel, "__annotations__", {})
    )


WINDOWS_SUPPORTED = _supported()

Outcome = BaseException | None
"""Per message: None once the broker confirmed it, else what its confirmation raised."""


# The content header's properties in pamqp's order, with their flag bits and encoders:
# what ``Basic.Properties.marshal`` does, with the per-property type lookups done once.
_PROPERTY_NAMES = {"message_type": "type"}  # pamqp's name -> MessageProperties'
_PROPERTIES = [
    (
        _PROPERTY_NAMES.get(name, name),
        spec.Basic.Properties.flags[name],
        spec.Basic.Properties.amqp_type(name),
        pamqp.encode.METHODS[spec.Basic.Properties.amqp_type(name)],
    )
    for name in spec.Basic.Properties.__slots__
    if name not in ("user_id", "cluster_id")  # never set by to_amqp_properties
]
_CACHED_SCALARS = (str, int, bool, datetime.datetime)
"""Types whose equal values always encode alike (not float: 0.0 == -0.0)."""
_HEADER = struct.Struct(">BHIHxxQH")  # frame type, channel, size; class, weight, body size; flags
_BODY = struct.Struct(">BHI")
_FRAME_END = b"\xce"


def _header_frame(
    properties: MessageProperties, body_size: int, number: int, cache: dict[Any, bytes]
) -> bytes:
    """pamqp's content header frame for ``properties``, byte for byte, with the encoding
    of each repeated value (content type, headers, task name...) done once per window."""
    flags = 0
    parts = []
    for name, flag, kind, encode in _PROPERTIES:
        value = getattr(properties, name)
        if value is None or value == "":
            continue
        flags |= flag
        value_type = type(value)
        if value_type in _CACHED_SCALARS:
            key: Any = (kind, value_type, value)
        elif value_type is dict and all(type(v) in _CACHED_SCALARS for v in value.values()):
            key = (kind, *((k, type(v), v) for k, v in value.items()))
        else:
            parts.append(encode(value))
            continue
        encoded = cache.get(key)
        if encoded is None:
            encoded = cache[key] = encode(value)
        parts.append(encoded)
    if properties.delivery_mode not in (1, 2):
        raise ValueError("left to pamqp, which refuses it")
    payload = b"".join(parts)
    return b"".join(
        (
            _HEADER.pack(2, number, 14 + len(payload), 60, body_size, flags),
            payload,
            _FRAME_END,
        )
    )


def _frames(
    channel: aiormq.Channel,
    message: OutgoingMessage,
    publish_frames: dict[tuple[str, str, bool], bytes],
    cache: dict[Any, bytes],
) -> bytes:
    """The publish's frames, as ``basic_publish`` builds them (method, header, body)."""
    number = channel.number
    key = (message.exchange, message.routing_key, message.mandatory)
    method = publish_frames.get(key)
    if method is None:  # the same for every message of a window to one route
        method = publish_frames[key] = pamqp.frame.marshal(
            spec.Basic.Publish(
                exchange=message.exchange,
                routing_key=message.routing_key,
                mandatory=message.mandatory,
                immediate=False,
            ),
            number,
        )
    body = message.body
    try:
        header = _header_frame(message.properties, len(body), number, cache)
    except Exception:  # pamqp's own way, with its own error for what it refuses
        properties = to_amqp_properties(message)
        header = pamqp.frame.marshal(ContentHeader(0, len(body), properties), number)
    parts = [method, header]
    size = channel.max_content_size
    for start in range(0, len(body), size):  # as basic_publish splits it (none if empty)
        chunk = body[start : start + size]
        parts += (_BODY.pack(3, number, len(chunk)), chunk, _FRAME_END)
    return b"".join(parts)


async def publish_window(
    channel: aiormq.Channel,
    messages: Sequence[OutgoingMessage],
    *,
    timeout: float | None,
    on_timeout: Callable[[], BaseException],
) -> list[Outcome]:
    """Publish ``messages`` on ``channel`` (publisher confirms on) in one write and wait
    for each confirmation, up to ``timeout`` for the whole window.

    Raises what acquiring the channel's lock raises (a closed channel) before anything
    is written; afterwards, each message gets its own outcome (``on_timeout()`` for
    those still unconfirmed at the deadline). Each message needs a message id (returns
    are matched by it) and a routing key of at most 255 characters.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    publish_frames: dict[tuple[str, str, bool], bytes] = {}
    cache: dict[Any, bytes] = {}
    payload = []
    ids = []
    written = []  # the indexes of the messages in the payload
    outcomes: list[Outcome] = [None] * len(messages)
    for index, message in enumerate(messages):
        try:
            payload.append(_frames(channel, message, publish_frames, cache))
        except Exception as exc:  # what basic_publish raises before it writes anything
            outcomes[index] = exc
            continue
        written.append(index)
        ids.append(message.properties.message_id or "")
    if not written:
        return outcomes
    window = _Window(len(written), channel.create_future())
    confirmations = [_Confirmation(window) for _ in written]
    first = 0
    try:
        async with asyncio.timeout_at(deadline), channel.lock:
            first = channel.delivery_tag + 1
            registered = channel.confirmations
            by_id = channel.message_id_delivery_tag
            for tag, (message_id, confirmation) in enumerate(
                zip(ids, confirmations, strict=True), start=first
            ):
                registered[tag] = confirmation  # type: ignore[assignment]  # see _Confirmation
                by_id[message_id] = tag
            channel.delivery_tag = first + len(ids) - 1
            try:
                await channel.write_queue.put(
                    ChannelFrame(payload=b"".join(payload), should_close=False)
                )
            except BaseException:
                # Not queued: the broker never sees these tags; give them back under the lock.
                channel.delivery_tag = first - 1
                for tag in range(first, first + len(ids)):
                    registered.pop(tag, None)
                _forget(channel, first, ids, confirmations, window)
                raise
    except TimeoutError:  # the lock stayed taken until the deadline: nothing written
        window.settled.cancel()
        for index in written:
            outcomes[index] = on_timeout()
        return outcomes
    except BaseException:
        window.settled.cancel()
        raise
    try:
        lost = await _settled(window, deadline)
        for index, confirmation in zip(written, confirmations, strict=True):
            if confirmation.state is _PENDING:
                outcomes[index] = on_timeout() if lost is None else lost
            else:
                outcomes[index] = confirmation.outcome
        return outcomes
    finally:
        _forget(channel, first, ids, confirmations, window)


_PENDING, _SETTLED, _CANCELLED = "pending", "settled", "cancelled"


class _Window:
    """A window's confirmations, and the one future of aiormq's that stands for them.

    aiormq rejects every future it made for a channel when the channel or connection
    closes; the window's unsettled confirmations take that future's error.
    """

    __slots__ = ("left", "settled")

    def __init__(self, size: int, settled: asyncio.Future[Any]) -> None:
        self.left = size
        self.settled = settled

    def one_settled(self) -> None:
        self.left -= 1
        if not self.left and not self.settled.done():
            self.settled.set_result(None)


class _Confirmation:
    """One publish's entry in aiormq's ``Channel.confirmations``: the part of a future
    that aiormq's reader uses there (``done``, ``cancelled``, ``set_result``,
    ``set_exception``), without a future per message, its callbacks and its place in
    aiormq's future store (each cost more than marshalling the message)."""

    __slots__ = ("outcome", "state", "window")

    def __init__(self, window: _Window) -> None:
        self.window = window
        self.state = _PENDING
        self.outcome: BaseException | None = None

    def done(self) -> bool:
        return self.state is not _PENDING

    def cancelled(self) -> bool:
        return self.state is _CANCELLED

    def set_result(self, _: object) -> None:
        self._settle(None)

    def set_exception(self, exception: BaseException) -> None:
        self._settle(exception)

    def cancel(self) -> bool:
        if self.state is not _PENDING:
            return False
        self.state = _CANCELLED
        return True

    def _settle(self, outcome: BaseException | None) -> None:
        if self.state is not _PENDING:
            raise asyncio.InvalidStateError(f"confirmation already {self.state}")
        self.state = _SETTLED
        self.outcome = outcome
        self.window.one_settled()


async def _settled(window: _Window, deadline: float | None) -> BaseException | None:
    """Wait until every confirmation of ``window`` is settled or the deadline passed;
    the error that closed the channel, if that came first."""
    try:
        async with asyncio.timeout_at(deadline):
            await window.settled
    except TimeoutError:
        return None
    except Exception as exc:  # aiormq's reason for closing the channel
        return exc
    return None


def _forget(
    channel: aiormq.Channel,
    first: int,
    ids: list[str],
    confirmations: list[_Confirmation],
    window: _Window,
) -> None:
    """Drop a window's message ids (``basic_publish`` does it per confirmation) and give
    up on what is still unconfirmed: a confirmation that arrives later finds it
    cancelled (aiormq logs it at debug level), as for a ``basic_publish`` whose wait
    timed out."""
    by_id = channel.message_id_delivery_tag
    for tag, message_id in enumerate(ids, start=first):
        if by_id.get(message_id) == tag:
            del by_id[message_id]
    for confirmation in confirmations:
        confirmation.cancel()
    if not window.settled.done():
        window.settled.cancel()  # out of aiormq's future store
