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
    channel = aiormq.Channel
    fields = {f.name for f in dataclasses.fields(ChannelFrame)}
    return (
        {"payload", "should_close"} <= fields
        and isinstance(getattr(channel, "lock", None), property)
        and hasattr(channel, "create_future")
        # set in __init__: the annotations say they are there
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
    futures: list[asyncio.Future[Any]] = []
    first = 0
    try:
        async with asyncio.timeout_at(deadline), channel.lock:
            first = channel.delivery_tag + 1
            confirmations = channel.confirmations
            by_id = channel.message_id_delivery_tag
            for tag, message_id in enumerate(ids, start=first):
                future = channel.create_future()
                confirmations[tag] = future
                by_id[message_id] = tag
                futures.append(future)
            channel.delivery_tag = first + len(ids) - 1
            try:
                await channel.write_queue.put(
                    ChannelFrame(payload=b"".join(payload), should_close=False)
                )
            except BaseException:
                # Not queued: the broker never sees these tags; give them back under the lock.
                channel.delivery_tag = first - 1
                _forget(channel, first, ids, futures, cancel=True)
                raise
    except TimeoutError:  # the lock stayed taken until the deadline: nothing written
        for index in written:
            outcomes[index] = on_timeout()
        return outcomes
    try:
        confirmed = await _outcomes(futures, deadline, on_timeout)
    finally:
        _forget(channel, first, ids, futures, cancel=False)
    for index, outcome in zip(written, confirmed, strict=True):
        outcomes[index] = outcome
    return outcomes


def _forget(
    channel: aiormq.Channel,
    first: int,
    ids: list[str],
    futures: list[asyncio.Future[Any]],
    *,
    cancel: bool,
) -> None:
    """Drop a window's message ids (``basic_publish`` does it per confirmation); with
    ``cancel``, also its confirmations."""
    by_id = channel.message_id_delivery_tag
    for tag, message_id in enumerate(ids, start=first):
        if by_id.get(message_id) == tag:
            del by_id[message_id]
        if cancel:
            channel.confirmations.pop(tag, None)
    for future in futures:
        if cancel or not future.done():
            # A confirmation that arrives later finds the future done (aiormq logs it at
            # debug level), as for a basic_publish whose wait timed out.
            future.cancel()


def _waking(waiter: asyncio.Future[None]) -> Callable[[asyncio.Future[Any]], None]:
    # A waiter of our own: cancelling this task must not cancel the confirmation.
    def wake(_: asyncio.Future[Any]) -> None:
        if not waiter.done():
            waiter.set_result(None)

    return wake


async def _outcomes(
    futures: list[asyncio.Future[Any]],
    deadline: float | None,
    on_timeout: Callable[[], BaseException],
) -> list[Outcome]:
    # Confirms mostly come in order and in bursts (multiple=True acks): wait on the
    # first unsettled future, and most of the others are settled by the time it is.
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline):
            for future in futures:
                if not future.done():
                    waiter = loop.create_future()
                    future.add_done_callback(_waking(waiter))
                    await waiter
    except TimeoutError:
        pass
    outcomes: list[Outcome] = []
    for future in futures:
        if not future.done():
            outcomes.append(on_timeout())
        elif future.cancelled():
            outcomes.append(asyncio.CancelledError())
        else:
            outcomes.append(future.exception())
    return outcomes
