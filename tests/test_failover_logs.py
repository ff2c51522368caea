"""A routine failover is quiet: the lost connection is one WARNING line, the reconnect one
INFO line, and the client library's own account (tracebacks included) only at debug."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from amqpq import App
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.transport.declare import declare_topology, declare_topology_sync
from tests.support.broker import close_connections_named
from tests.support.processes import REPO_ROOT, Processes, amqpq_env
from tests.support.waiting import eventually

pytestmark = pytest.mark.rabbitmq

EXAMPLE = REPO_ROOT / "examples" / "amqpq.yaml"
LIBRARIES = ("aio_pika", "aiormq", "pika")


async def test_the_async_producers_reconnect_is_one_warning_and_one_info_line(
    settings: Settings, vhost: str, management: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    topology = load_topology(EXAMPLE, {})
    await declare_topology(settings, topology)
    app = App("quiet", settings=settings, topology=topology)
    try:
        await app.asend_task("quiet.add", [1, 2], ignore_result=True)
        caplog.clear()
        caplog.set_level(logging.INFO)

        # The management API lists a new connection after a moment.
        closed = await asyncio.to_thread(
            eventually,
            lambda: close_connections_named(management, vhost, "amqpq producer "),
            what="the producer's connection in the management API",
        )
        assert closed == 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not any("reconnected" in r.getMessage() for r in caplog.records):
            assert loop.time() < deadline, [r.getMessage() for r in caplog.records]
            await asyncio.sleep(0.05)
        await app.asend_task("quiet.add", [3, 4], ignore_result=True)
        await asyncio.sleep(0.5)  # room for any line that would follow
    finally:
        await app.aclose()
        app.close()

    lines = [(r.levelname, r.name, r.getMessage()) for r in caplog.records]
    assert not [line for line in lines if line[1].split(".")[0] in LIBRARIES], lines
    lines = [line for line in lines if line[1].split(".")[0] == "amqpq"]  # not the test's httpx
    assert [level for level, _, _ in lines] == ["WARNING", "INFO"], lines
    assert lines[0][2].startswith("lost the connection to RabbitMQ at amqp://guest@127.0.0.1")
    assert "CONNECTION_FORCED" in lines[0][2]
    assert lines[1][2].startswith("reconnected to RabbitMQ at amqp://guest@127.0.0.1")
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.slow
def test_a_workers_reconnect_is_one_warning_and_one_info_line(
    broker_url: str, vhost: str, management: httpx.Client, tmp_path: Path
) -> None:
    (tmp_path / "quiettasks.py").write_text(
        "from amqpq import App\n\n"
        f"app = App('quiettasks', topology={str(EXAMPLE)!r})\n\n\n"
        "@app.task\ndef add(x: int, y: int) -> int:\n    return x + y\n"
    )
    declare_topology_sync(Settings(url=broker_url), load_topology(EXAMPLE, {}))
    processes = Processes(tmp_path)
    try:
        worker = processes.start(
            "worker",
            *("-A", "quiettasks", "--workers", "1", "-l", "INFO"),
            env=amqpq_env(broker_url),
            cwd=tmp_path,
        )
        worker.started_blocking()
        before = len(worker.log().splitlines())

        closed = eventually(
            lambda: close_connections_named(management, vhost, "amqpq worker "),
            what="the worker's connection in the management API",
        )
        assert closed == 1
        worker.wait_for_log_blocking("reconnected to RabbitMQ")
        eventually(lambda: _consumers(management, vhost) > 0, what="consuming again")
        logged = worker.log().splitlines()[before:]
    finally:
        processes.stop_all()

    assert not [line for line in logged if "Traceback" in line], logged
    levels = [m.group(1) for line in logged if (m := _LEVEL.search(line))]
    assert levels == ["WARNING", "INFO"], logged


_LEVEL = re.compile(r" (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def _consumers(management: httpx.Client, vhost: str) -> int:
    queues = management.get(f"/queues/{quote(vhost, safe='')}").json()
    return sum(int(q.get("consumers", 0)) for q in queues if q["name"] == "default")
