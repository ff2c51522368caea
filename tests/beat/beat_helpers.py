"""Helpers of the beat tests: ``amqpq beat`` subprocesses and reading what they sent."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "beat_topology.yaml"
_SENT = re.compile(r" sent schedule=(\S+) task=\S+ id=(\S+) ")


class BeatProcess:
    """One ``python -m amqpq beat`` subprocess with its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "amqpq", "beat", "-f", str(TOPOLOGY), *args],
            cwd=HERE,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sent_ids(self) -> list[str]:
        """Task ids this beat logged as sent, in order."""
        return [m.group(2) for m in _SENT.finditer(self.log())]

    async def wait_for_log(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.log().count(text) < count:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"beat exited ({self.process.returncode}) before logging {text!r}:\n{self.log()}"
                )
            if loop.time() > deadline:
                raise AssertionError(f"beat did not log {text!r} in {timeout}s:\n{self.log()}")
            await asyncio.sleep(0.05)

    async def wait_sent(self, count: int, timeout: float = 30.0) -> None:
        await self.wait_for_log(" sent schedule=", timeout, count)

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 20.0) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.process.poll() is None:
            if loop.time() > deadline:
                raise AssertionError(f"beat still running after {timeout}s:\n{self.log()}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


async def drain(broker_url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in ``queue`` now (basic.get until empty, acked)."""
    connection = await aio_pika.connect(
        broker_url, client_properties={"connection_name": "amqpq tests beat drain"}
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


def tick_of(task_id: str) -> datetime:
    """``beat:<schedule>:<tick ISO>`` -> the tick."""
    prefix, _schedule, iso = task_id.split(":", 2)
    assert prefix == "beat", task_id
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)


def ids_of(messages: list[Any]) -> Counter[str]:
    ids: Counter[str] = Counter()
    for message in messages:
        body = json.loads(message.body)
        assert message.message_id == body["id"]
        ids[body["id"]] += 1
    return ids
