"""The control protocol: commands to every live worker, replies over direct reply-to.

A command is a JSON message published to the fanout exchange ``amqpq.control``
with ``reply_to = amq.rabbitmq.reply-to`` and a ``correlation_id``:

```json
{"op": "inspect", "args": {}, "id": "9b1c...", "sent_at": "2026-11-22T03:09:34+00:00"}
```

Each worker consumes an exclusive, auto-delete queue bound to it,
``amqpq.control.<host>.<pid>`` (``x-message-ttl`` 10 s: a command nobody read
in time is dropped, not run late), and answers on ``reply_to``:

```json
{"worker": "web-1:4242", "op": "inspect", "id": "9b1c...", "ok": true, "data": {...}}
```

The caller collects replies for ``timeout`` seconds. Ops: ``ping``, ``inspect``,
``revoke`` (``{"ids": [...], "terminate": false}``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amqpq.codec import CONTENT_TYPE, MessageProperties, OutgoingMessage
from amqpq.settings import Settings
from amqpq.topology.infra import control_exchange_name
from amqpq.transport.aio import AsyncBroker, ReplyChannel
from amqpq.transport.base import ReplyPublisher
from amqpq.transport.broadcast import Subscription, exchange_exists
from amqpq.wire import DIRECT_REPLY_TO

__all__ = [
    "COMMAND_TTL_MS",
    "ControlReply",
    "ControlRequest",
    "ControlServer",
    "Handler",
    "broadcast",
    "control_queue_name",
]

log = logging.getLogger("amqpq.control")

COMMAND_TTL_MS = 10_000
Handler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


def control_queue_name(prefix: str, hostname: str, pid: int) -> str:
    return f"{control_exchange_name(prefix)}.{hostname}.{pid}"


class ControlRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    op: str
    args: dict[str, Any] = Field(default_factory=dict)
    id: str
    sent_at: datetime | None = None


class ControlReply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    worker: str
    op: str
    id: str
    ok: bool = True
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class ControlServer:
    """A worker's end: consume the control queue, run the handler of each op, reply."""

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        prefix: str,
        worker_name: str,
        queue: str,
        handlers: Mapping[str, Handler],
        replies: ReplyPublisher,
    ) -> None:
        self._worker = worker_name
        self._handlers = dict(handlers)
        # The worker's reply connection: a reply to a caller whose node is gone may break
        # it (RabbitMQ 3.10), and must not break the connection that carries acks.
        self._replies = replies
        self._subscription = Subscription(
            broker,
            exchange=control_exchange_name(prefix),
            queue=queue,
            on_message=self._on_message,
            arguments={"x-message-ttl": COMMAND_TTL_MS},
        )
        self.queue = queue

    async def start(self, consumer_tag: str | None = None) -> None:
        await self._subscription.start(consumer_tag=consumer_tag)

    async def _on_message(self, body: bytes, properties: MessageProperties, key: str) -> None:
        try:
            request = ControlRequest.model_validate_json(body)
        except ValidationError:
            log.warning("ignoring an unreadable control command")
            return
        handler = self._handlers.get(request.op)
        if handler is None:
            reply = ControlReply(
                worker=self._worker, op=request.op, id=request.id, ok=False, error="unknown op"
            )
        else:
            try:
                data = await handler(request.args)
                reply = ControlReply(worker=self._worker, op=request.op, id=request.id, data=data)
            except Exception as exc:
                log.exception("control command %s failed", request.op)
                reply = ControlReply(
                    worker=self._worker, op=request.op, id=request.id, ok=False, error=str(exc)
                )
        if not properties.reply_to:
            return
        message = OutgoingMessage(
            body=reply.model_dump_json().encode(),
            properties=MessageProperties(
                content_type=CONTENT_TYPE,
                delivery_mode=1,
                correlation_id=properties.correlation_id or request.id,
            ),
            exchange="",
            routing_key=properties.reply_to,
            mandatory=False,
        )
        await self._replies.send(message)

    async def close(self) -> None:
        await self._subscription.close()


async def broadcast(
    settings: Settings,
    op: str,
    args: Mapping[str, Any] | None = None,
    *,
    prefix: str = "amqpq",
    timeout: float = 1.0,
) -> list[ControlReply]:
    """Send one command to every live worker; the replies that arrive within ``timeout``.

    An empty list when no worker is listening. Raises :class:`UnroutableError`
    when the control exchange does not exist (the topology was never applied).
    """
    request_id = uuid.uuid4().hex
    replies: list[ControlReply] = []
    arrived = asyncio.Event()

    def on_reply(correlation_id: str | None, body: bytes) -> None:
        if correlation_id != request_id:
            return
        try:
            replies.append(ControlReply.model_validate_json(body))
        except ValidationError:
            log.warning("ignoring an unreadable control reply")
        arrived.set()

    def on_lost(reason: str) -> None:
        log.warning("control replies lost: %s", reason)

    broker = AsyncBroker(settings, "control")
    channel = ReplyChannel(broker, on_reply=on_reply, on_lost=on_lost)
    exchange = control_exchange_name(prefix)
    try:
        await broker.connect()
        await exchange_exists(broker, exchange)
        request = ControlRequest(op=op, args=dict(args or {}), id=request_id, sent_at=_now())
        message = OutgoingMessage(
            body=json.dumps(request.model_dump(mode="json")).encode(),
            properties=MessageProperties(
                content_type=CONTENT_TYPE,
                delivery_mode=1,
                correlation_id=request_id,
                reply_to=DIRECT_REPLY_TO,
                expiration=str(COMMAND_TTL_MS),
                type=f"amqpq.control.{op}",
            ),
            exchange=exchange,
            routing_key="",
            mandatory=False,  # no worker bound is an answer too: nobody replies
        )
        await channel.publish(message)
        await asyncio.sleep(timeout)
    finally:
        await channel.close()
        await broker.close()
    return sorted(replies, key=lambda r: r.worker)


def _now() -> datetime:
    return datetime.now(UTC)
