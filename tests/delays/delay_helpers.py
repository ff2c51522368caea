"""Helpers of the delay tests: worker subprocesses, a reply collector, exact queue counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

HERE = Path(__file__).resolve().parent
TOPOLOGY_FILE = HERE / "delays_topology.yaml"
FINAL = {"SUCCESS", "FAILURE", "REVOKED", "EXPIRED", "REJECTED"}


class WorkerProcess:
    """``python -m amqpq worker -A delay_tasks ...`` in a session of its own.

    ``stop()`` kills the whole session, so the workers an ``--workers N``
    supervisor forked go too.
    """

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "amqpq", "worker", "-A", "delay_tasks", *args],
            cwd=HERE,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.log().count(text) < count:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited before logging {text!r}:\n{self.log()}")
            if loop.time() > deadline:
                raise AssertionError(f"worker did not log {text!r} x{count}:\n{self.log()}")
            await asyncio.sleep(0.05)

    async def started(self) -> WorkerProcess:
        await self.wait_for_log("worker started")
        return self

    def stop(self) -> None:
        # The whole session, even when its leader is gone (a supervisor's workers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()


class Replies:
    """A reply queue of the test's own: every reply of every task, in arrival order."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self.connection = connection
        self.queue = ""
        self.by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._arrived = asyncio.Condition()

    async def start(self) -> Replies:
        channel = await self.connection.channel()
        # Not exclusive: the producer checks a result queue with a passive declare.
        queue = await channel.declare_queue(f"dt-replies-{uuid.uuid4().hex[:8]}", auto_delete=True)
        self.queue = queue.name
        await queue.consume(self._on_reply, no_ack=True)
        return self

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        reply = json.loads(message.body)
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


async def queue_count(connection: AbstractRobustConnection, queue: str) -> int:
    """Ready messages of a queue, exact (passive declare, not the management statistics)."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def wait_count(
    connection: AbstractRobustConnection, queue: str, expected: int, timeout: float = 20.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (count := await queue_count(connection, queue)) != expected:
        if loop.time() > deadline:
            raise AssertionError(f"{queue}: {count} messages, expected {expected}")
        await asyncio.sleep(0.05)


async def delay_level_counts(
    connection: AbstractRobustConnection, prefix: str = "amqpq"
) -> dict[int, int]:
    """Messages waiting in each delay level queue, levels with none left out."""
    counts = {}
    for level in range(30):
        count = await queue_count(connection, f"{prefix}.delay.{level}")
        if count:
            counts[level] = count
    return counts


async def take(
    connection: AbstractRobustConnection, queue: str, timeout: float = 20.0
) -> AbstractIncomingMessage:
    """One message of ``queue`` (acked), waiting for it to arrive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    channel = await connection.channel()
    declared = await channel.declare_queue(queue, passive=True)
    while (message := await declared.get(fail=False, no_ack=True)) is None:
        if loop.time() > deadline:
            raise AssertionError(f"nothing arrived in {queue} in {timeout}s")
        await asyncio.sleep(0.05)
    return message
