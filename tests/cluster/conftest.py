"""The cluster suite: one local 3-node cluster for the whole package, brought up by the
project's own ``deploy/rabbitmq/cluster.sh`` under the session's tmp dir, on ports and node
names of its own; killed nodes rejoin between scenarios; every node is stopped after the
package's last test (the rest of the suite does not share the machine with it).

Each scenario gets a vhost of its own on the cluster, amqpq's real workers and beats
(``AmqpqProcess``) and a sending App, all with the cluster's URL list and
``AMQPQ_MANAGEMENT_URL``. What a fault cost is printed in the terminal summary
("cluster fault figures") and recorded as test properties (``--junitxml``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amqpq.app import App
from amqpq.settings import Settings
from amqpq.topology.loader import load_topology
from amqpq.topology.models import Topology
from amqpq.transport.declare import declare_topology_sync
from tests.support.brokernode import BrokerNode, rabbitmq_available
from tests.support.cluster import LocalCluster
from tests.support.fleet import FaultFigures, RunLog
from tests.support.processes import AmqpqProcess, Processes, amqpq_env

HERE = Path(__file__).resolve().parent
# While working on the suite, AMQPQ_TEST_CLUSTER_DIR=/tmp/amqpq-test-cluster keeps one cluster
# up from run to run (nodes kept1..3, ports 10681-10683); stop it with
# AMQPQ_CLUSTER_DIR=/tmp/amqpq-test-cluster AMQPQ_CLUSTER_PORT_BASE=10680
# AMQPQ_CLUSTER_NODE_PREFIX=kept deploy/rabbitmq/cluster.sh clean
KEEP_ENV = "AMQPQ_TEST_CLUSTER_DIR"
KEPT_PORT_BASE = 10680
KEPT_PREFIX = "kept"
TOPOLOGY = HERE / "cluster_topology.yaml"
FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three nodes clustered by ``cluster.sh up``; all killed and deleted at the end."""
    if not rabbitmq_available():
        pytest.skip(
            "the cluster suite needs the rabbitmq-server package "
            "(/usr/lib/rabbitmq/bin/rabbitmq-server): apt-get install rabbitmq-server"
        )
    kept = os.environ.get(KEEP_ENV)
    if kept:
        local = LocalCluster(Path(kept), port_base=KEPT_PORT_BASE, prefix=KEPT_PREFIX)
        local.up()  # idempotent: reuses the cluster a previous run left there
        yield local
        return
    local = LocalCluster.on_free_ports(tmp_path_factory.mktemp("cluster"))
    try:
        local.up()
        yield local
    finally:
        local.discard()


@pytest.fixture
def cluster_vhost(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A vhost of the test's own; afterwards every node runs again (a killed one rejoins)."""
    cluster.ensure_up()
    name = f"amqpq-cluster-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    cluster.create_vhost(name)
    yield name
    cluster.ensure_up()
    cluster.delete_vhost(name)


@pytest.fixture
def topology() -> Topology:
    return load_topology(TOPOLOGY)


@pytest.fixture
def declared(cluster: LocalCluster, cluster_vhost: str, topology: Topology) -> Topology:
    """The topology and amqpq's infrastructure, declared as ``amqpq topology apply`` does."""
    declare_topology_sync(cluster_settings(cluster, cluster_vhost), topology)
    cluster.sync_definitions()
    return topology


def cluster_settings(
    cluster: LocalCluster, vhost: str, first: BrokerNode | None = None
) -> Settings:
    # A test that names a process's first node means it: the given order, not a shuffle.
    return Settings(
        url=cluster.urls(vhost, first=first),
        management_url=cluster.management_url,
        failover_order="given" if first is not None else "shuffle",
    )


@pytest.fixture
def runs(tmp_path: Path) -> RunLog:
    return RunLog(tmp_path / "runs.log")


@pytest.fixture
def cluster_env(
    cluster: LocalCluster, cluster_vhost: str, runs: RunLog
) -> Callable[..., dict[str, str]]:
    """Factory: the environment of an amqpq process on the cluster (``first`` node's URL first)."""

    def env(first: BrokerNode | None = None, **extra: str) -> dict[str, str]:
        if first is not None:  # on that node first, as the test says (not shuffled)
            extra = {"AMQPQ_FAILOVER_ORDER": "given", **extra}
        return amqpq_env(
            cluster.urls(cluster_vhost, first=first),
            AMQPQ_MANAGEMENT_URL=cluster.management_url,
            AMQPQ_TOPOLOGY=str(TOPOLOGY),
            **runs.env(),
            **extra,
        )

    return env


@pytest.fixture
def start_worker(
    declared: Topology, cluster_env: Callable[..., dict[str, str]], amqpq_processes: Processes
) -> Callable[..., AmqpqProcess]:
    """Factory: ``start_worker("-c", "4", first=node)`` runs ``amqpq worker -Q work``."""

    def start(*args: str, first: BrokerNode | None = None) -> AmqpqProcess:
        return amqpq_processes.start(
            "worker",
            *("-A", "cluster_tasks", "-Q", "work", *args),
            env=cluster_env(first),
            cwd=HERE,
            own_session=True,
        )

    return start


@pytest.fixture
def make_app(
    cluster: LocalCluster, cluster_vhost: str, declared: Topology
) -> Iterator[Callable[..., App]]:
    """Factory: a sending App on the cluster (``first`` node's URL first); closed afterwards."""
    made: list[App] = []

    def make(first: BrokerNode | None = None) -> App:
        app = App(
            "cl-sender", settings=cluster_settings(cluster, cluster_vhost, first), topology=declared
        )
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


@pytest.fixture
def report(
    request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> Callable[[FaultFigures | str], None]:
    """Report a fault's figures (or a line): printed, kept for the terminal summary and
    recorded as properties of the test."""

    def report(figures: FaultFigures | str) -> None:
        if isinstance(figures, FaultFigures):
            for field in ("sent", "lost", "duplicates", "most_runs", "longest_pause"):
                record_property(field, getattr(figures, field))
            line = figures.line()
        else:
            line = figures
        record_property("figures", line)
        request.config.stash.setdefault(FIGURES, []).append(f"{request.node.name}: {line}")
        print(line)

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("cluster fault figures")
        for line in lines:
            terminalreporter.write_line(line)
