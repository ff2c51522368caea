"""``queue=`` sends straight to one queue, as Celery users expect, with or without a delay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aio_pika
import pytest

from amqpq.app import App
from amqpq.errors import ConfigError, UnroutableError
from amqpq.settings import Settings
from amqpq.transport.declare import declare_topology

TOPOLOGY = """
exchanges: [{name: fan, type: fanout}]
queues:
  - {name: a, bindings: [{exchange: fan}]}
  - {name: b, bindings: [{exchange: fan}]}
routes: {"*": {exchange: fan}}
"""


@pytest.fixture
def app(tmp_path: Path, settings: Settings) -> App:
    path = tmp_path / "amqpq.yaml"
    path.write_text(TOPOLOGY)
    app = App("t", settings=settings, topology=path)

    @app.task(name="t.pinned", queue="b")
    def pinned(x: int) -> int:
        return x

    @app.task(name="t.spread")
    def spread(x: int) -> int:
        return x

    asyncio.run(declare_topology(settings, app.topology))
    return app


async def _counts(url: str, *queues: str) -> dict[str, int]:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        counts = {}
        for name in queues:
            queue = await channel.declare_queue(name, passive=True)
            counts[name] = queue.declaration_result.message_count
        return counts


@pytest.mark.rabbitmq
def test_queue_option_reaches_only_that_queue_where_the_route_fans_out(
    app: App, broker_url: str
) -> None:
    app.send_task("t.spread", [1], ignore_result=True)  # the route: both queues
    app.send_task("t.spread", [2], queue="a", ignore_result=True)  # the call's queue
    app.send_task("t.pinned", [3], ignore_result=True)  # the task's own queue option
    app.close()
    assert asyncio.run(_counts(broker_url, "a", "b")) == {"a": 2, "b": 2}


@pytest.mark.rabbitmq
def test_a_delayed_send_to_a_queue_comes_back_to_that_queue(app: App, broker_url: str) -> None:
    app.send_task("t.spread", [1], queue="a", countdown=0.3, ignore_result=True)
    app.close()

    async def wait() -> dict[str, int]:
        for _ in range(50):
            counts = await _counts(broker_url, "a", "b")
            if counts["a"]:
                return counts
            await asyncio.sleep(0.1)
        return counts

    assert asyncio.run(wait()) == {"a": 1, "b": 0}


def test_queue_and_an_exchange_together_are_refused(app: App) -> None:
    with pytest.raises(ConfigError, match="not both"):
        app.producer.preparer.prepare("t.spread", [1], options={"queue": "a", "exchange": "fan"})


def test_a_queue_missing_from_the_file_is_unroutable_before_publishing(app: App) -> None:
    with pytest.raises(UnroutableError, match="reach no queue"):
        app.producer.preparer.prepare("t.spread", [1], options={"queue": "nope"})
