"""Bare pika on the test's side: the wire format written and read directly (docs/protocol.md),
without amqpq's producer or worker, so tests check what is on the wire, not what amqpq thinks."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pika

from amqpq import codec


def declare_file_objects(url: str, topology: Any) -> None:
    """Declare the file's exchanges, queues and bindings only (fast; no delay levels or DLQs).

    Tests that need amqpq's infrastructure use ``declare_topology_sync`` instead.
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for exchange in topology.exchanges:
            channel.exchange_declare(
                exchange.name,
                exchange.type,
                durable=exchange.durable,
                auto_delete=exchange.auto_delete,
                internal=exchange.internal,
                arguments=exchange.declare_arguments or None,
            )
        for queue in topology.queues:
            channel.queue_declare(
                queue.name,
                durable=queue.durable,
                auto_delete=queue.auto_delete,
                arguments=queue.declare_arguments or None,
            )
        for binding in topology.bindings():
            arguments = binding.arguments or None
            if binding.destination_type == "queue":
                channel.queue_bind(
                    binding.destination, binding.source, binding.routing_key, arguments
                )
            else:
                channel.exchange_bind(
                    binding.destination, binding.source, binding.routing_key, arguments
                )
    finally:
        connection.close()


def get_message(url: str, queue: str, timeout: float = 5.0) -> tuple[Any, Any, bytes]:
    """Wait for one message in ``queue`` (test-side, bare pika) and ack it."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return method, properties, body
            connection.sleep(0.02)
        raise AssertionError(f"no message in {queue!r} within {timeout}s")
    finally:
        connection.close()


def queue_depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


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
