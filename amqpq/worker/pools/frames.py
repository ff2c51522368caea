"""The frames between the worker and the child processes of the ``processes`` pool.

A frame is a 4-byte big-endian length followed by that many bytes of JSON (one
object); never pickle. The worker reads and writes them on the child's pipes
with asyncio (:func:`receive_frame`, :func:`encode_frame`); the child, which has
nothing else to do, with blocking calls on file descriptors (:func:`read_frame`,
:func:`write_frame`).

Frames: worker -> child ``{"op": "run", "task", "args", "kwargs", "request",
"soft_time_limit"}``; child -> worker ``{"op": "ready", "pid", "tasks"}`` (or
``{"op": "error", "message"}``) once, then per task any number of
``{"op": "progress", "state", "meta"}`` and one ``{"op": "done", "outcome"}``.
"""

from __future__ import annotations

import json
import os
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["encode_frame", "read_frame", "receive_frame", "write_frame"]

_HEADER = struct.Struct(">I")


def encode_frame(message: dict[str, Any]) -> bytes:
    """One frame: the length header and the JSON body."""
    data = json.dumps(message, separators=(",", ":"), default=str).encode()
    return _HEADER.pack(len(data)) + data


def _decode_body(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("frame is not a JSON object")
    return message


async def receive_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The next frame from a child's stdout (``IncompleteReadError`` at end of input)."""
    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return _decode_body(await reader.readexactly(length))


def write_frame(fd: int, message: dict[str, Any]) -> None:
    """Blocking write of one frame (used by the child)."""
    view = memoryview(encode_frame(message))
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_frame(fd: int) -> dict[str, Any] | None:
    """Blocking read of one frame (used by the child); None at end of input."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    data = _read_exactly(fd, length)
    if data is None:
        return None
    return _decode_body(data)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)
