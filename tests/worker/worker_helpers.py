"""Helpers of the worker tests: real ``amqpq worker`` processes and a bare aio-pika client.

The client speaks the wire format directly (docs/protocol.md), without amqpq's
producer, so these tests also show the worker serves plain AMQP clients.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

HERE = Path(__file__).resolve().parent
FINAL = {"SUCCESS", "FAILURE", "REVOKED", "EXPIRED", "REJECTED"}


class WorkerProcess:
    """One ``python -m amqpq worker`` subprocess with its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "amqpq", "worker", *args],
            cwd=HERE,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while text not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.process.returncode}) before logging {text!r}:\n{self.log()}"
                )
            if loop.time() > deadline:
                raise AssertionError(f"worker did not log {text!r} in {timeout}s:\n{self.log()}")
            await asyncio.sleep(0.05)

    async def started(self) -> WorkerProcess:
        await self.wait_for_log("worker started")
        return self

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.process.poll() is None:
            if loop.time() > deadline:
                raise AssertionError(f"worker still running after {timeout}s:\n{self.log()}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


class TaskClient:
    """Publishes task envelopes with a plain AMQP client and collects replies by task id."""

    def __init__(self, connection: AbstractRobustConnection, channel: AbstractChannel) -> None:
        self.connection = connection
        self.channel = channel
        self.reply_queue = ""
        self.replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._arrived = asyncio.Condition()

    async def start(self) -> None:
        queue = await self.channel.declare_queue(exclusive=True)
        self.reply_queue = queue.name
        await queue.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        reply = json.loads(message.body)
        assert message.correlation_id == reply["id"]
        async with self._arrived:
            self.replies[reply["id"]].append(reply)
            self._arrived.notify_all()

    async def send(
        self,
        task: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str = "work",
        reply: bool = True,
        **envelope: Any,
    ) -> str:
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
                reply_to=self.reply_queue if reply else None,
                headers=headers,
            ),
            routing_key=queue,
            mandatory=True,
        )

    async def wait_reply(
        self, task_id: str, states: set[str] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first reply for ``task_id`` in ``states`` (default: a final state)."""
        wanted = states or FINAL

        def found() -> dict[str, Any] | None:
            return next((r for r in self.replies[task_id] if r["state"] in wanted), None)

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: found() is not None), timeout)
        result = found()
        assert result is not None
        return result

    async def ready_count(self, queue: str) -> int:
        """Ready (not unacked) messages of a queue, exact (passive declare, not the stats)."""
        channel = await self.connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            count = declared.declaration_result.message_count
            return int(count or 0)
        finally:
            await channel.close()

    async def take_all(
        self, queue: str, expected: int, timeout: float = 20.0
    ) -> list[AbstractIncomingMessage]:
        """Get (and ack) ``expected`` messages from ``queue``, waiting for them to arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        taken: list[AbstractIncomingMessage] = []
        declared = await self.channel.declare_queue(queue, passive=True)
        while len(taken) < expected:
            message = await declared.get(fail=False, no_ack=True)
            if message is None:
                if loop.time() > deadline:
                    raise AssertionError(f"{queue}: {len(taken)} of {expected} messages arrived")
                await asyncio.sleep(0.05)
                continue
            taken.append(message)
        return taken
