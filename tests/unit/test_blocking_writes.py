"""The sync producer's writes: a publish's frames reach the socket as one buffer, in order.

No broker: a stand-in for pika's connection and its plain TCP transport, whose socket
takes what the test allows.
"""

from __future__ import annotations

import collections
from types import SimpleNamespace
from typing import Any

from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport

from amqpq.transport.blocking import _coalesce_writes


class _Socket:
    def __init__(self, takes: int | None = None, error: OSError | None = None) -> None:
        self.takes = takes
        self.error = error
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        taken = data if self.takes is None else data[: self.takes]
        self.sent.append(taken)
        return len(taken)


def _connection(sock: _Socket, queued: list[bytes] | None = None) -> tuple[Any, list[bytes]]:
    transport = _AsyncPlaintextTransport.__new__(_AsyncPlaintextTransport)
    transport._sock = sock
    transport._state = _AsyncPlaintextTransport._STATE_ACTIVE
    transport._tx_buffers = collections.deque(queued or [])
    handed_to_pika: list[bytes] = []
    impl = SimpleNamespace(
        _transport=transport,
        _output_marshaled_frames=lambda frames: None,
        _adapter_emit_data=handed_to_pika.append,
        frames_sent=0,
        bytes_sent=0,
    )
    _coalesce_writes(SimpleNamespace(_impl=impl))  # type: ignore[arg-type]
    return impl, handed_to_pika


def test_a_publish_goes_to_the_socket_in_one_send_when_nothing_is_queued() -> None:
    sock = _Socket()
    impl, handed_to_pika = _connection(sock)
    impl._output_marshaled_frames([b"method", b"header", b"body"])
    assert sock.sent == [b"methodheaderbody"]
    assert handed_to_pika == []
    assert (impl.frames_sent, impl.bytes_sent) == (3, 16)


def test_what_the_socket_does_not_take_is_left_to_pika_in_order() -> None:
    sock = _Socket(takes=4)
    impl, handed_to_pika = _connection(sock)
    impl._output_marshaled_frames([b"method", b"header"])
    assert sock.sent == [b"meth"]
    assert handed_to_pika == [b"odheader"]


def test_a_socket_that_would_block_or_fails_leaves_the_whole_publish_to_pika() -> None:
    for error in (BlockingIOError(), ConnectionResetError()):
        impl, handed_to_pika = _connection(_Socket(error=error))
        impl._output_marshaled_frames([b"method", b"body"])
        assert handed_to_pika == [b"methodbody"]


def test_bytes_already_queued_by_pika_go_first() -> None:
    sock = _Socket()
    impl, handed_to_pika = _connection(sock, queued=[b"earlier"])
    impl._output_marshaled_frames([b"method", b"body"])
    assert sock.sent == []
    assert handed_to_pika == [b"methodbody"]
