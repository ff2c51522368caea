"""A bare aio-pika client on the test's side: task envelopes written as docs/protocol.md
says, replies collected by task id, queues counted and read exactly.

It speaks the wire format without amqpq's producer, so tests that use it also show the
worker serves plain AMQP clients.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import defaultdict
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

FINAL = {"SUCCESS", "FAILURE", "REVOKED", "EXPIRED", "REJECTED"}


class Replies:
    """Every reply of every task on one reply queue, in arrival order, by task id."""

    def __init__(self, *, check_correlation: bool = False) -> None:
        self.check_correlation = check_correlation
        self.queue = ""
        self.by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._arrived = asyncio.Condition()

    async def consume(self, queue: AbstractQueue) -> Replies:
        self.queue = queue.name
        await queue.consume(self._on_reply, no_ack=True)
        return self

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        reply = json.loads(message.body)
        if self.check_correlation:
            assert message.correlation_id == reply["id"]
        async with self._arrived:
            self.by_id[reply["id"]].append(reply)
            self._arrived.notify_all()

    def states(self, task_id: str) -> list[str]:
        return [r["state"] for r in self.by_id[task_id]]

    async def wait(
        self, task_id: str, states: set[str] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first reply for ``task_id`` in ``states`` (default: a final state)."""
        wanted = states or FINAL

        def found() -> dict[str, Any] | None:
            return next((r for r in self.by_id[task_id] if r["state"] in wanted), None)

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: found() is not None), timeout)
        result = found()
        assert result is not None
        return result


async def named_replies(connection: AbstractConnection) -> Replies:
    """Replies on a named, auto-deleted queue (not exclusive: a producer may check it with a
    passive declare)."""
    channel = await connection.channel()
    queue = await channel.declare_queue(f"dt-replies-{uuid.uuid4().hex[:8]}", auto_delete=True)
    return await Replies().consume(queue)


class TaskClient:
    """Publishes task envelopes with a plain AMQP client and collects replies by task id."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel) -> None:
        self.connection = connection
        self.channel = channel
        self.reply_queue = ""
        self.collected = Replies(check_correlation=True)
        self.replies = self.collected.by_id

    async def start(self) -> None:
        await self.collected.consume(await self.channel.declare_queue(exclusive=True))
        self.reply_queue = self.collected.queue

    async def send(
        self,
        task: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str = "work",
        reply: bool = True,
        reply_to: str | None = None,
        **envelope: Any,
    ) -> str:
        """Publish a task; its replies go to this client's queue, or to ``reply_to``."""
        task_id = envelope.pop("id", None) or str(uuid.uuid4())
        body = {"protocol": 1, "id": task_id, "task": task, "args": args or [], **envelope}
        if kwargs:
            body["kwargs"] = kwargs
        await self.publish_raw(
            json.dumps(body).encode(),
            queue=queue,
            message_id=task_id,
            correlation_id=task_id,
            reply=reply,
            reply_to=reply_to,
            headers={"amqpq-protocol": 1, "amqpq-task": task},
        )
        return task_id

    async def publish_raw(
        self,
        body: bytes,
        *,
        queue: str = "work",
        message_id: str | None = None,
        correlation_id: str | None = None,
        reply: bool = True,
        reply_to: str | None = None,
        content_type: str = "application/json",
        headers: dict[str, Any] | None = None,
    ) -> None:
        await self.channel.default_exchange.publish(
            aio_pika.Message(
                body,
                content_type=content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
                correlation_id=correlation_id,
                reply_to=(reply_to or self.reply_queue) if reply else None,
                headers=headers,
            ),
            routing_key=queue,
            mandatory=True,
        )

    async def wait_reply(
        self, task_id: str, states: set[str] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first reply for ``task_id`` in ``states`` (default: a final state)."""
        return await self.collected.wait(task_id, states, timeout)

    async def ready_count(self, queue: str) -> int:
        """Ready (not unacked) messages of a queue, exact (passive declare, not the stats)."""
        return await queue_count(self.connection, queue)

    async def take_all(
        self, queue: str, expected: int, timeout: float = 20.0
    ) -> list[AbstractIncomingMessage]:
        """Get (and ack) ``expected`` messages from ``queue``, waiting for them to arrive."""
        return await take(self.channel, queue, expected, timeout)


async def queue_count(connection: AbstractConnection, queue: str) -> int:
    """Ready messages of a queue, exact (passive declare, not the management statistics)."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def wait_count(
    connection: AbstractConnection, queue: str, expected: int, timeout: float = 20.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (count := await queue_count(connection, queue)) != expected:
        if loop.time() > deadline:
            raise AssertionError(f"{queue}: {count} messages, expected {expected}")
        await asyncio.sleep(0.05)


async def take(
    channel: AbstractChannel, queue: str, expected: int = 1, timeout: float = 20.0
) -> list[AbstractIncomingMessage]:
    """Get (and ack) ``expected`` messages from ``queue``, waiting for them to arrive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    taken: list[AbstractIncomingMessage] = []
    declared = await channel.declare_queue(queue, passive=True)
    while len(taken) < expected:
        message = await declared.get(fail=False, no_ack=True)
        if message is None:
            if loop.time() > deadline:
                raise AssertionError(f"{queue}: {len(taken)} of {expected} messages arrived")
            await asyncio.sleep(0.05)
            continue
        taken.append(message)
    return taken


async def take_one(
    connection: AbstractConnection, queue: str, timeout: float = 20.0
) -> AbstractIncomingMessage:
    """One message of ``queue`` (acked), waiting for it to arrive."""
    [message] = await take(await connection.channel(), queue, 1, timeout)
    return message


async def drain(broker_url: str, queue: str) -> list[AbstractIncomingMessage]:
    """Every message in ``queue`` now (basic.get until empty, acked), on a connection of its own."""
    connection = await aio_pika.connect(
        broker_url, client_properties={"connection_name": "amqpq tests drain"}
    )
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        taken = []
        while (message := await declared.get(fail=False, no_ack=True)) is not None:
            taken.append(message)
        return taken
    finally:
        await connection.close()


DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


async def direct_reply_address(connection: AbstractConnection) -> str:
    """A real direct reply-to address: what the broker makes of ``amq.rabbitmq.reply-to``
    for one channel (read back from a message published to a queue of our own)."""
    channel = await connection.channel()
    try:
        replies = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
        await replies.consume(_ignore, no_ack=True)
        probe = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(
            aio_pika.Message(b"probe", reply_to=DIRECT_REPLY_TO), routing_key=probe.name
        )
        [message] = await take(channel, probe.name)
        assert message.reply_to is not None
        assert message.reply_to.startswith(DIRECT_REPLY_TO)
        return message.reply_to
    finally:
        await channel.close()


async def _ignore(_message: AbstractIncomingMessage) -> None:
    return None


def departed_node_address(address: str) -> str:
    """``address`` as if the node of its channel had left the cluster.

    A direct reply-to address carries the replying channel's process id with its node
    name shortened to ``reply@<hash>``; another hash of the same length names a node
    the broker does not know. RabbitMQ 3.10 crashes the channel that publishes to such
    an address (``{case_clause,error}`` in ``rabbit_channel:deliver_reply``) and closes
    that channel's connection with 541 INTERNAL_ERROR, just as when the node died.
    """
    prefix = DIRECT_REPLY_TO + "."
    encoded, key = address.removeprefix(prefix).split(".", 1)
    raw = base64.b64decode(encoded)
    start = raw.index(b"reply@") + len(b"reply@")
    end = start
    while end < len(raw) and raw[end : end + 1].isdigit():
        end += 1
    assert end > start, f"no node hash in {address!r}"
    other = bytes(ord("1") + (digit - ord("0")) % 9 for digit in raw[start:end])
    forged = raw[:start] + other + raw[end:]
    assert forged != raw
    return prefix + base64.b64encode(forged).decode() + "." + key


async def direct_call(
    connection: AbstractConnection,
    task: str,
    args: list[Any],
    *,
    queue: str = "work",
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Send a task as an RPC caller does (direct reply-to, on a channel of its own) and
    return its final reply; TimeoutError when none arrives within ``timeout``."""
    channel = await connection.channel()
    try:
        collected = Replies(check_correlation=True)
        await collected.consume(await channel.get_queue(DIRECT_REPLY_TO, ensure=False))
        task_id = str(uuid.uuid4())
        body = {"protocol": 1, "id": task_id, "task": task, "args": args}
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                content_type="application/json",
                message_id=task_id,
                correlation_id=task_id,
                reply_to=DIRECT_REPLY_TO,
                headers={"amqpq-protocol": 1, "amqpq-task": task},
            ),
            routing_key=queue,
            mandatory=True,
        )
        return await collected.wait(task_id, timeout=timeout)
    finally:
        await channel.close()
