"""A fake worker in bare pika: consumes queues and answers exactly as docs/protocol.md says a
worker does, so producer tests do not depend on amqpq.worker."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pika


@dataclass
class FakeWorker:
    """Consumes a queue with bare pika and answers per docs/protocol.md."""

    url: str
    queues: tuple[str, ...] = ("default",)
    seen: list[dict[str, Any]] = field(default_factory=list)
    _connection: Any = None
    _channel: Any = None
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> FakeWorker:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "fake worker did not start"
        return self

    def _run(self) -> None:
        self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = self._channel = self._connection.channel()
        channel.basic_qos(prefetch_count=20)
        for queue in self.queues:
            channel.basic_consume(queue, self._on_message)
        self._ready.set()
        try:
            channel.start_consuming()
        finally:
            if self._connection.is_open:
                self._connection.close()

    def _reply(self, channel: Any, properties: Any, body: dict[str, Any]) -> None:
        if not properties.reply_to:
            return
        channel.basic_publish(
            "",
            properties.reply_to,
            json.dumps(body),
            pika.BasicProperties(
                correlation_id=body["id"],
                content_type="application/json",
                type="amqpq.reply",
                headers={"amqpq-protocol": 1},
                delivery_mode=1 if properties.reply_to.startswith("amq.rabbitmq.reply-to") else 2,
            ),
        )

    def _on_message(self, channel: Any, method: Any, properties: Any, raw: bytes) -> None:
        envelope = json.loads(raw)
        self.seen.append(envelope)
        task_id, name, args = envelope["id"], envelope["task"], envelope.get("args", [])
        base = {"protocol": 1, "id": task_id, "task": name, "worker": "fake"}
        if name == "tasks.fail":
            self._reply(
                channel,
                properties,
                {
                    **base,
                    "state": "FAILURE",
                    "error": {"type": "ValueError", "message": "boom", "traceback": "Traceback"},
                },
            )
        elif name == "tasks.progress":
            self._reply(channel, properties, {**base, "state": "STARTED"})
            self._reply(channel, properties, {**base, "state": "PROGRESS", "meta": {"done": 1}})
            time.sleep(float(args[0]) if args else 0)
            self._reply(channel, properties, {**base, "state": "SUCCESS", "result": "done"})
        elif name == "tasks.revoked":
            self._reply(channel, properties, {**base, "state": "REVOKED"})
        elif name == "tasks.silent":
            pass
        elif name == "tasks.noisy":
            # A reply for an id nobody waits for, then garbage, then the real one.
            self._reply(channel, properties, {**base, "id": "someone-else", "state": "SUCCESS"})
            self._reply(channel, properties, {**base, "state": "SUCCESS", "result": args})
        elif name == "tasks.sleep":
            time.sleep(float(args[0]))
            self._reply(channel, properties, {**base, "state": "SUCCESS", "result": args[0]})
        else:
            result = sum(args) + sum(envelope.get("kwargs", {}).values())
            self._reply(channel, properties, {**base, "state": "SUCCESS", "result": result})
        channel.basic_ack(method.delivery_tag)

    def stop(self) -> None:
        if self._connection is not None and self._thread is not None:
            with contextlib.suppress(Exception):
                self._connection.add_callback_threadsafe(self._channel.stop_consuming)
            self._thread.join(5)
