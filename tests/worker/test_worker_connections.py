"""The worker's connections under faults: replies apart from acks, a start-up that is cut.

Real ``amqpq worker`` processes on the test's vhost; faults made by the broker itself
(a reply it cannot deliver, a connection limit) or through its management API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.aio_clients import (
    TaskClient,
    departed_node_address,
    direct_call,
    direct_reply_address,
    wait_count,
)
from tests.support.processes import reconnected_marker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


async def test_a_reply_the_broker_cannot_deliver_costs_no_ack_and_runs_no_task_twice(
    start_worker, client: TaskClient, tmp_path: Path
) -> None:
    # Given a worker on a quorum queue (delivery limit 20) and callers whose node is gone:
    # on RabbitMQ 3.10 a reply to such an address crashes the channel that publishes it,
    # and the broker closes that channel's connection (541 INTERNAL_ERROR)
    worker = await start_worker("-Q", "qwork", "-c", "1").started()
    departed = departed_node_address(await direct_reply_address(client.connection))
    runs = tmp_path / "runs"

    # When tasks of those callers run
    tags = [f"t{i}" for i in range(6)]
    for tag in tags:
        await client.send("wt.record", [str(runs), tag], queue="qwork", reply_to=departed)

    # Then the worker keeps serving live callers once its reply connection is back
    answered = await _answered_eventually(client)
    assert answered["result"] == 3
    # And each task ran once, was acked once, and none was dead-lettered
    assert Counter(runs.read_text().split()) == Counter(tags)
    assert await client.ready_count("qwork") == 0
    assert await client.ready_count("qwork.dlq") == 0
    log = worker.log()
    assert "reply dropped" in log or reconnected_marker("worker-replies", worker.pid) in log
    # The worker's own connection never reconnected (its replies have a connection apart)
    assert reconnected_marker("worker", worker.pid) not in log


async def _answered_eventually(client: TaskClient, attempts: int = 20) -> dict[str, Any]:
    """A live RPC caller's reply: one sent while the reply connection reconnects is lost
    (the caller times out and asks again), never the task's ack."""
    for _ in range(attempts):
        try:
            return await direct_call(client.connection, "wt.add", [1, 2], queue="qwork", timeout=3)
        except TimeoutError:
            continue
    raise AssertionError(f"no reply to a live caller in {attempts} attempts")


async def test_tasks_run_and_are_acked_while_the_reply_connection_cannot_come_back(
    start_worker, client: TaskClient, management: httpx.Client, vhost: str, tmp_path: Path
) -> None:
    # Given a worker of one slot whose reply connection is closed and may not reconnect
    # (the vhost is at its connection limit), as while a reply broke it on a dying node
    worker = await start_worker("-Q", "work", "-c", "1").started()
    caller = await direct_reply_address(client.connection)
    api = httpx.AsyncClient(base_url=str(management.base_url), auth=management.auth, timeout=10)
    async with api:
        connections = await _count_connections(api, vhost, until_named="amqpq worker-replies ")
        async with _connection_limit(management, vhost, connections - 1):
            assert await _close_connections(api, vhost, "amqpq worker-replies ", times=1) == 1

            # When tasks whose callers wait for a reply run meanwhile
            runs = tmp_path / "runs"
            tags = [f"t{i}" for i in range(5)]
            for tag in tags:
                await client.send("wt.record", [str(runs), tag], reply_to=caller)

            # Then each runs and is acked: a reply with no connection is dropped at once,
            # it never holds the slot until the reply connection is back
            await wait_count(client.connection, "work", 0)
            await worker.wait_for_log("reply dropped", count=len(tags))
            assert sorted(runs.read_text().split()) == tags
    assert reconnected_marker("worker", worker.pid) not in worker.log()


async def _count_connections(api: httpx.AsyncClient, vhost: str, *, until_named: str) -> int:
    """The vhost's connections, once one named ``until_named...`` shows."""
    for _ in range(200):
        response = await api.get(f"/vhosts/{quote(vhost, safe='')}/connections")
        response.raise_for_status()
        names = [
            c.get("user_provided_name") or c.get("client_properties", {}).get("connection_name", "")
            for c in response.json()
        ]
        if any(str(name).startswith(until_named) for name in names):
            return len(names)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no connection named {until_named!r} on {vhost}")


async def test_a_worker_whose_connection_is_closed_while_it_declares_starts_again(
    start_worker, client: TaskClient, management: httpx.Client, vhost: str, tmp_path: Path
) -> None:
    # Given a topology large enough that declaring it takes a while
    topology = tmp_path / "big.yaml"
    queues = "\n".join(f"  - name: filler-{i}" for i in range(400))
    topology.write_text(
        "exchanges:\n  - {name: wt, type: direct}\nqueues:\n"
        "  - name: work\n    bindings: [{exchange: wt, routing_key: work}]\n"
        f'{queues}\nroutes:\n  "*": {{exchange: wt, routing_key: work}}\n'
    )
    api = httpx.AsyncClient(base_url=str(management.base_url), auth=management.auth, timeout=10)
    async with api:
        # When an operator closes its declaring connection while it starts (twice)
        worker = start_worker("-Q", "work", "-c", "1", "--topology", str(topology))
        closed = await _close_connections(api, vhost, "amqpq topology ", times=2)

    # Then it says so and starts again instead of exiting, and consumes
    assert closed >= 1
    await worker.wait_for_log("start-up interrupted")
    await worker.started()
    assert (await client.wait_reply(await client.send("wt.add", [2, 3])))["result"] == 5


async def _close_connections(
    api: httpx.AsyncClient, vhost: str, prefix: str, *, times: int, within: float = 20.0
) -> int:
    """Close connections named ``prefix...`` as soon as they show, up to ``times``; how many."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    closed: set[str] = set()
    while len(closed) < times and loop.time() < deadline:
        response = await api.get(f"/vhosts/{quote(vhost, safe='')}/connections")
        response.raise_for_status()
        for connection in response.json():
            name = str(connection["name"])
            provided = connection.get("user_provided_name") or connection.get(
                "client_properties", {}
            ).get("connection_name", "")
            if provided.startswith(prefix) and name not in closed:
                await api.delete(
                    f"/connections/{quote(name, safe='')}",
                    headers={"X-Reason": "test: closed while the worker starts"},
                )
                closed.add(name)
        await asyncio.sleep(0.02)
    return len(closed)


async def test_a_worker_whose_start_up_is_cut_starts_again_and_consumes(
    start_worker, client: TaskClient, management: httpx.Client, vhost: str
) -> None:
    # Given a vhost that takes one more connection than the test client's: the worker's
    # own connection gets in, the next one it opens on the way (declaring the topology)
    # is refused, as when the broker goes away in the middle of a start
    async with _connection_limit(management, vhost, 2):
        worker = start_worker("-Q", "work", "-c", "1")
        # Then it says so, once per attempt, and keeps trying (it does not exit)
        await worker.wait_for_log("start-up interrupted", count=2)
        assert "connecting again in 1s (attempt 1)" in worker.log()
        assert worker.process.poll() is None

    # When the broker takes connections again, it starts and consumes
    await worker.started()
    assert (await client.wait_reply(await client.send("wt.add", [2, 3])))["result"] == 5


async def test_a_worker_stopped_during_its_start_up_back_off_exits_0(
    start_worker, management: httpx.Client, vhost: str
) -> None:
    async with _connection_limit(management, vhost, 1):
        worker = start_worker("-Q", "work", "-c", "1")
        await worker.wait_for_log("start-up interrupted")
        assert await asyncio.to_thread(worker.terminate) == 0


@contextlib.asynccontextmanager
async def _connection_limit(
    management: httpx.Client, vhost: str, connections: int
) -> AsyncIterator[None]:
    """The vhost takes at most ``connections`` connections while in the block."""
    limit = f"/vhost-limits/{quote(vhost, safe='')}/max-connections"
    response = await asyncio.to_thread(management.put, limit, json={"value": connections})
    response.raise_for_status()
    try:
        yield
    finally:
        await asyncio.to_thread(management.delete, limit)
