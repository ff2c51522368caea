"""The one wording of broker failures, shared by the aio-pika and the pika error mappers.

Each client library has its own mapping point (:mod:`amqpq.transport.aio_mapping`,
:mod:`amqpq.transport.pika_mapping`) that recognises that library's exceptions;
both phrase what they found with the functions here, so a refused connection, a
wrong password or a lost connection reads the same from the worker, the producers
and every CLI command. Library-free: no client library is imported here.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable

__all__ = [
    "CONNECTION_LOST",
    "CONNECTION_REFUSED",
    "TIMED_OUT",
    "cannot_connect",
    "credentials_refused",
    "publish_lost",
    "refused_times",
    "socket_reason",
    "vhost_refused",
]

CONNECTION_LOST = "the connection to RabbitMQ was lost"
CONNECTION_REFUSED = "connection refused"
TIMED_OUT = "timed out"


def cannot_connect(reasons: Iterable[str]) -> str:
    """No broker address answered; ``reasons`` are ``"<address>: <reason>"``, one each."""
    return "cannot connect to RabbitMQ: " + "; ".join(reasons)


def credentials_refused(username: str) -> str:
    return f"the broker refused the credentials for user {username!r}"


def vhost_refused(vhost: str, username: str) -> str:
    return f"vhost {vhost!r} does not exist or user {username!r} may not use it"


def publish_lost(reason: str) -> str:
    """A publish that failed on the recovered connection too (it was retried once)."""
    return f"publish failed, connection lost: {reason}"


def socket_reason(exc: BaseException, host: str | None = None) -> str | None:
    """A few words for a socket-level failure (refused, timed out, unknown host, an errno);
    None when ``exc`` is not one."""
    if isinstance(exc, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return TIMED_OUT
    if not isinstance(exc, OSError):
        return None
    code = exc.errno
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    # Client libraries re-raise socket errors as their own, keeping the errno in args.
    if isinstance(exc, socket.gaierror) or code in (socket.EAI_NONAME, socket.EAI_AGAIN):
        return f"unknown host {host!r}" if host else "unknown host"
    if code == errno.ECONNREFUSED:
        return CONNECTION_REFUSED
    if code is not None:
        return os.strerror(code).lower() if code > 0 else str(exc.args[-1])
    if exc.strerror:
        return exc.strerror.lower()
    return None


def refused_times(pauses: Iterable[float]) -> str:
    """How often a refused (nacked) message was sent, with ``pauses`` between, before
    giving up."""
    waits = list(pauses)
    return f"refused {len(waits) + 1} times over {sum(waits):.1f}s"
