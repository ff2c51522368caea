"""What the core needs from a broker, as small protocols; aio, blocking and memory implement them.

The producers, the worker and the test broker type against these protocols
only, so a transport can be swapped the way an HTTP client swaps its transport:
``App`` builds the RabbitMQ ones from the URL, :class:`amqpq.testing.TestBroker`
hands the producers memory ones. Speed tricks stay private to each implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from amqpq.codec import OutgoingMessage

__all__ = [
    "AsyncSendTransport",
    "LostCallback",
    "ReplyCallback",
    "SendLock",
    "SyncSendTransport",
]

# -- sending

ReplyCallback = Callable[[str | None, bytes], None]
"""Called with ``correlation_id`` and body of each direct reply-to reply."""
LostCallback = Callable[[str], None]
"""Called with a reason when the reply path broke: the direct replies in flight are lost."""


class SendLock(Protocol):
    """The lock a synchronous producer holds around every call into its transport."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...

    def release(self) -> None: ...


class SyncSendTransport(Protocol):
    """A synchronous producer's connection: confirmed publishes and the direct reply-to path.

    Every call but :meth:`wake_pump` is made under :attr:`lock`. Direct replies
    reach the producer only while it calls :meth:`pump`.
    """

    name: str
    """The connection's name (shown by the management UI)."""
    generation: int
    """Moves on each time the reply path is replaced (its direct replies are lost then)."""

    @property
    def lock(self) -> SendLock: ...

    @property
    def is_connected(self) -> bool: ...

    def listen(self, on_reply: ReplyCallback, on_lost: LostCallback) -> None:
        """Where direct replies go, and who hears that they were lost; set before first use."""
        ...

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def publish_many(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[tuple[BaseException | None, int]]:
        """Publish all, confirmed; per message its error (None when confirmed) and the
        generation of the reply path that took it."""
        ...

    def pump(self, time_limit: float) -> None:
        """Take in replies (and heartbeats) for up to ``time_limit`` seconds."""
        ...

    def wake_pump(self) -> None:
        """Thread-safe, without the lock: make a :meth:`pump` in another thread return soon."""
        ...

    def expect_replies(self, task_id: str, task: str | None, state: str) -> None:
        """Raise :class:`~amqpq.errors.ResultTimeoutError` when no reply for ``task_id`` can
        arrive while its caller waits (in memory, tasks run only when asked); else return."""
        ...

    def ensure_queue(self, name: str) -> None:
        """Make sure a durable result queue exists."""
        ...

    def collect(self, queue: str, wanted: Container[str]) -> list[tuple[str | None, bytes]]:
        """Take the replies for ``wanted`` task ids out of a result queue; leave the others."""
        ...


class AsyncSendTransport(Protocol):
    """An asyncio producer's connection: confirmed publishes and the direct reply-to path.

    Direct replies are handed to the ``on_reply`` of :meth:`listen` as they arrive.
    """

    name: str
    generation: int
    """Moves on each time the reply path is replaced (its direct replies are lost then)."""

    def listen(self, on_reply: ReplyCallback, on_lost: LostCallback) -> None:
        """Where direct replies go, and who hears that they were lost; set before first use."""
        ...

    async def connect(self) -> None:
        """Open the connection and the reply path now instead of on the first publish."""
        ...

    async def close(self) -> None: ...

    async def publish(self, message: OutgoingMessage, *, timeout: float | None = 30.0) -> int:
        """Publish on the reply path's channel, confirmed; the generation that took it."""
        ...

    def publish_plain(
        self, message: OutgoingMessage, *, timeout: float | None = 30.0
    ) -> Awaitable[None]:
        """Publish a message that expects no reply (events, revocations), confirmed."""
        ...

    def expect_replies(self, task_id: str, task: str | None, state: str) -> None:
        """As :meth:`SyncSendTransport.expect_replies`."""
        ...

    async def ensure_queue(self, name: str) -> None: ...

    async def collect(
        self, queue: str, wanted: Container[str]
    ) -> list[tuple[str | None, bytes]]: ...
