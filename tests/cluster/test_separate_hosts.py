"""Workers on separate hosts: one worker in a network namespace of its own (its own address,
a veth link to the broker's host), cut off for 25 s by blackhole routes.

The broker is a node of the test's own that also listens on the link's address; the other
worker runs beside it. The cut-off worker's tasks go to the other worker, nothing is lost,
and the worker rejoins by itself once the link is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from amqpq.app import App
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.transport.declare import declare_topology_sync
from tests.cluster.conftest import HERE, TOPOLOGY
from tests.support.brokernode import BrokerNode, free_port, rabbitmq_available
from tests.support.fleet import FaultFigures, RunLog, Sender
from tests.support.netns import NetnsUnavailable, WorkerHost
from tests.support.processes import Processes, amqpq_env
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not rabbitmq_available(), reason="no rabbitmq-server package here"),
]

PARTITION = 25.0
HEARTBEAT = "5"  # the broker notices a silent client after two missed heartbeats


@pytest.fixture
def host() -> Iterator[WorkerHost]:
    try:
        worker_host = WorkerHost.create()
    except NetnsUnavailable as exc:
        pytest.skip(f"workers on separate hosts need network namespaces (root, iproute2): {exc}")
    try:
        yield worker_host
    finally:
        worker_host.close()


@pytest.fixture
def node(host: WorkerHost, tmp_path: Path) -> Iterator[BrokerNode]:
    """A broker node listening on 127.0.0.1 and on the worker host's link."""
    port = free_port()
    broker = BrokerNode(
        f"amqpq-hosts-{port}",
        port,
        free_port(),
        free_port(),
        tmp_path / "node",
        extra_config=host.listener_config(port),
    )
    broker.start()
    try:
        yield broker
    finally:
        if broker.running:
            broker.kill()


def peer_hosts(node: BrokerNode) -> set[str]:
    with httpx.Client(auth=("guest", "guest"), timeout=10) as api:
        connections = api.get(f"{node.management_url}/api/connections").json()
    return {str(c.get("peer_host")) for c in connections}


def test_a_cut_off_worker_host_loses_nothing_its_tasks_run_elsewhere_and_it_rejoins(
    host: WorkerHost,
    node: BrokerNode,
    amqpq_processes: Processes,
    tmp_path: Path,
    report: Callable[[FaultFigures | str], None],
) -> None:
    # Given the topology on the broker, a worker on a host of its own and one beside the broker
    settings = Settings(url=node.url, management_url=node.management_url)
    topology = load_topology(TOPOLOGY)
    declare_topology_sync(settings, topology)
    runs = RunLog(tmp_path / "runs.log")
    common = {
        "AMQPQ_TOPOLOGY": str(TOPOLOGY),
        "AMQPQ_MANAGEMENT_URL": node.management_url,
        "AMQPQ_HEARTBEAT": HEARTBEAT,
        **runs.env(),
    }
    remote_url = f"amqp://guest:guest@{host.outer_ip}:{node.amqp_port}/"
    remote = amqpq_processes.start(
        "worker",
        *("-A", "cluster_tasks", "-Q", "work", "-c", "2"),
        env=amqpq_env(remote_url, **common),
        cwd=HERE,
        own_session=True,
        wrapper=host.wrapper,
    ).started_blocking()
    local = amqpq_processes.start(
        "worker",
        *("-A", "cluster_tasks", "-Q", "work", "-c", "2"),
        env=amqpq_env(node.url, **common),
        cwd=HERE,
        own_session=True,
    ).started_blocking()
    eventually(lambda: host.inner_ip in peer_hosts(node), what="the remote worker's connection")
    app = App("hosts-sender", settings=settings, topology=topology)

    # When the remote host is cut off (blackhole route) while both run a backlog, for 25 s
    first = Sender(
        lambda i: app.send_task("cl.work", [i, 0.5], ignore_result=True).id,
        burst=60,
        rate=0,
        duration=0,
    )
    first.start()
    first.join(60)
    eventually(
        lambda: sum(run.pid == remote.pid for run in runs.runs()) >= 2,
        timeout=30,
        what="the remote worker running tasks",
    )
    partitioned_at = time.time()
    host.partition()
    time.sleep(PARTITION)
    host.heal()
    healed_at = time.time()

    # And tasks keep coming after the link is back
    second = Sender(
        lambda i: app.send_task("cl.work", [1000 + i, 0.2], ignore_result=True).id,
        rate=4,
        duration=30,
    )
    second.start()
    eventually(
        lambda: any(r.pid == remote.pid and r.at > healed_at for r in runs.runs()),
        timeout=60,
        what="the remote worker running tasks again",
    )
    second.stop()
    app.close()
    confirmed = first.confirmed + second.confirmed
    runs.wait_for(confirmed, idle=30, timeout=90)

    # Then nothing was lost, and what the remote worker ran while cut off (its ack could not
    # leave) ran again on the other worker
    all_runs = runs.runs()
    held = {
        r.task_id
        for r in all_runs
        if r.pid == remote.pid and partitioned_at + 0.2 < r.at < healed_at
    }
    rerun_elsewhere = {r.task_id for r in all_runs if r.pid == local.pid and r.task_id in held}
    figures = FaultFigures.of(
        f"worker host cut off {PARTITION:.0f}s",
        confirmed,
        len(first.errors) + len(second.errors),
        runs,
        partitioned_at,
    )
    taken_over = [
        r.at - partitioned_at for r in all_runs if r.pid == local.pid and r.task_id in held
    ]
    back = min(r.at for r in all_runs if r.pid == remote.pid and r.at > healed_at) - healed_at
    line = (
        f"{figures.line()} held={len(held)} re-run elsewhere={len(rerun_elsewhere)} "
        f"taken over {min(taken_over, default=float('nan')):.1f}s after the cut, "
        f"remote ran again {back:.1f}s after healing"
    )
    report(line)
    assert figures.lost == 0
    assert held, "the remote worker ran nothing while cut off: no backlog at the cut"
    assert rerun_elsewhere == held
    assert remote.process.poll() is None
    assert local.process.poll() is None
