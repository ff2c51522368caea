"""Helpers of the ops tests: a plain pika client that writes dead letters as the worker does,
and the ``amqpq`` CLI run in-process."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
from typer.testing import CliRunner, Result

from amqpq import codec
from amqpq.cli import app

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "ops_topology.yaml"


class Cli:
    """``amqpq ...`` against the test's vhost, with the test topology unless told otherwise."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        environment = {"AMQPQ_URL": self.broker_url, "AMQPQ_TOPOLOGY": str(TOPOLOGY), **(env or {})}
        result = CliRunner().invoke(app, list(args), env=environment, input=input)
        assert "Traceback" not in result.output, result.output
        assert "Traceback" not in result.stderr, result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        return result

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def envelope(task: str = "ops.fragile", *, retries: int = 0, **fields: Any) -> tuple[str, bytes]:
    task_id = fields.pop("id", None) or str(uuid.uuid4())
    body = {
        "protocol": 1,
        "id": task_id,
        "task": task,
        "args": fields.pop("args", []),
        "retries": retries,
        **fields,
    }
    return task_id, json.dumps(body).encode()


class PlainClient:
    """A bare pika client: tasks, dead letters written exactly as the worker writes them, counts."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection
        self.channel = connection.channel()
        self.channel.confirm_delivery()

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        task_id: str | None = None,
        headers: dict[str, Any] | None = None,
        task: str = "ops.fragile",
    ) -> None:
        self.channel.basic_publish(
            exchange,
            routing_key,
            body,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                message_id=task_id,
                correlation_id=task_id,
                type=task,
                headers={codec.HEADER_PROTOCOL: 1, codec.HEADER_TASK: task, **(headers or {})},
            ),
            mandatory=True,
        )

    def dead_letter(
        self,
        queue: str = "work",
        *,
        reason: str = "failed",
        retries: int = 0,
        exchange: str = "ops",
        routing_key: str | None = None,
        task: str = "ops.fragile",
        args: list[Any] | None = None,
    ) -> str:
        """A dead letter as amqpq.worker.deadletter publishes it: to amqpq.dlx, key = queue."""
        task_id, body = envelope(task, retries=retries, args=args or ["/nonexistent", "/dev/null"])
        headers = {
            codec.HEADER_REASON: reason,
            codec.HEADER_ERROR_TYPE: "ValueError",
            codec.HEADER_ERROR_MESSAGE: f"boom {task_id}",
            codec.HEADER_ORIGINAL_QUEUE: queue,
            codec.HEADER_ORIGINAL_EXCHANGE: exchange,
            codec.HEADER_ORIGINAL_ROUTING_KEY: routing_key if routing_key is not None else queue,
            codec.HEADER_DEAD_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        self.publish("amqpq.dlx", queue, body, task_id, headers, task)
        return task_id

    def count(self, queue: str) -> int:
        """Ready messages, exact (passive declare)."""
        channel = self.connection.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.message_count)
        finally:
            channel.close()

    def wait_count(self, queue: str, expected: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while (count := self.count(queue)) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{queue}: {count} messages, expected {expected}")
            time.sleep(0.05)

    def take_all(self, queue: str) -> list[tuple[Any, Any, bytes]]:
        """Consume every ready message of ``queue`` for good (method, properties, body)."""
        taken: list[tuple[Any, Any, bytes]] = []
        channel = self.connection.channel()
        try:
            while True:
                method, properties, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return taken
                taken.append((method, properties, body))
        finally:
            channel.close()

    def ids(self, queue: str) -> list[str]:
        return [properties.message_id for _, properties, _ in self.take_all(queue)]
