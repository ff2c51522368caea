"""docs/protocol.md is enough: submit a task and read its reply with bare pika only.

The client half uses nothing but pika and what docs/protocol.md says. It runs
twice: against a worker written here in bare pika from the same page, and against
the real ``amqpq worker`` started as a subprocess.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.support.processes import Processes, amqpq_env

pytestmark = pytest.mark.rabbitmq

TASKS_MODULE = """
from amqpq import App

app = App("proto_tasks")


@app.task(name="tasks.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tasks.fail")
def fail() -> None:
    raise ValueError("boom")
"""

TOPOLOGY_YAML = """
exchanges:
  - {name: tasks, type: direct}
queues:
  - name: default
    bindings: [{exchange: tasks, routing_key: default}]
routes:
  "*": {exchange: tasks, routing_key: default}
"""


def submit_and_wait(url: str, task: str, args: list[Any], timeout: float = 10.0) -> dict[str, Any]:
    """The client half: exactly the steps of docs/protocol.md, "In short"."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        replies: list[dict[str, Any]] = []
        task_id = str(uuid.uuid4())

        def on_reply(_ch: Any, _method: Any, properties: Any, body: bytes) -> None:
            if properties.correlation_id == task_id:
                replies.append(json.loads(body))

        # Consume direct reply-to on the publishing channel *before* publishing.
        channel.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
        channel.confirm_delivery()
        channel.basic_publish(
            exchange="tasks",
            routing_key="default",
            body=json.dumps({"protocol": 1, "id": task_id, "task": task, "args": args}),
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                message_id=task_id,
                correlation_id=task_id,
                reply_to="amq.rabbitmq.reply-to",
                headers={"amqpq-protocol": 1, "amqpq-task": task},
            ),
            mandatory=True,
        )
        final = {"SUCCESS", "FAILURE", "REVOKED", "EXPIRED", "REJECTED"}
        deadline = time.monotonic() + timeout
        while not any(r["state"] in final for r in replies):
            assert time.monotonic() < deadline, f"no final reply; got {replies}"
            connection.process_data_events(time_limit=0.1)
        return next(r for r in replies if r["state"] in final)
    finally:
        connection.close()


class PlainWorker:
    """The worker half from docs/protocol.md: run tasks.add, reply on the default exchange."""

    def __init__(self, url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.basic_consume("default", self._on_task)
        self.thread = threading.Thread(target=self.channel.start_consuming, daemon=True)

    def _on_task(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        envelope = json.loads(body)
        if envelope["task"] == "tasks.add":
            reply = {"protocol": 1, "id": envelope["id"], "state": "SUCCESS"}
            reply["result"] = sum(envelope["args"])
        else:
            reply = {"protocol": 1, "id": envelope["id"], "state": "FAILURE"}
            reply["error"] = {"type": "ValueError", "message": "boom"}
        if properties.reply_to:
            channel.basic_publish(
                "",
                properties.reply_to,
                json.dumps(reply),
                pika.BasicProperties(
                    correlation_id=properties.correlation_id,
                    content_type="application/json",
                    type="amqpq.reply",
                    headers={"amqpq-protocol": 1},
                ),
            )
        channel.basic_ack(method.delivery_tag)

    def __enter__(self) -> PlainWorker:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.add_callback_threadsafe(self.channel.stop_consuming)
        self.thread.join(5)
        self.connection.close()


def declare_plain(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare("tasks", "direct", durable=True)
    channel.queue_declare("default", durable=True)
    channel.queue_bind("default", "tasks", "default")
    connection.close()


def test_a_plain_client_and_a_plain_worker_speak_the_documented_protocol(
    broker_url: str,
) -> None:
    declare_plain(broker_url)
    with PlainWorker(broker_url):
        reply = submit_and_wait(broker_url, "tasks.add", [3, 4])
    assert reply["state"] == "SUCCESS"
    assert reply["result"] == 7


@pytest.fixture
def real_worker(broker_url: str, tmp_path: Path, amqpq_processes: Processes) -> Iterator[None]:
    from amqpq.settings import Settings
    from amqpq.topology.loader import load_topology
    from amqpq.transport.declare import declare_topology_sync

    (tmp_path / "proto_tasks.py").write_text(TASKS_MODULE)
    (tmp_path / "amqpq.yaml").write_text(TOPOLOGY_YAML)
    declare_topology_sync(Settings(url=broker_url), load_topology(tmp_path / "amqpq.yaml"))
    env = amqpq_env(broker_url, AMQPQ_TOPOLOGY=str(tmp_path / "amqpq.yaml"))
    worker = amqpq_processes.start("worker", "-A", "proto_tasks", "-c", "2", env=env, cwd=tmp_path)
    try:
        yield
    finally:
        worker.stop(grace=10.0)


def test_a_plain_client_gets_results_from_the_real_worker(
    broker_url: str, real_worker: None
) -> None:
    reply = submit_and_wait(broker_url, "tasks.add", [3, 4], timeout=20)
    assert reply["state"] == "SUCCESS"
    assert reply["result"] == 7
    failed = submit_and_wait(broker_url, "tasks.fail", [])
    assert failed["state"] == "FAILURE"
    assert failed["error"]["type"] == "ValueError"
    assert failed["error"]["message"] == "boom"
    rejected = submit_and_wait(broker_url, "tasks.add", ["x", 4])
    assert rejected["state"] in ("REJECTED", "FAILURE")
