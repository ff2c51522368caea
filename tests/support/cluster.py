"""A local 3-node RabbitMQ cluster for tests, brought up by the project's own
``deploy/rabbitmq/cluster.sh`` (no Docker), beside the shared broker on 5672.

Each cluster gets its own directory, node names and ports, so the suite's cluster never
meets a developer's (``cluster.sh up`` with the defaults, on 5681-5683):

    cluster = LocalCluster.on_free_ports(tmp_path_factory.mktemp("cluster"))
    cluster.up()                      # ~35 s the first time
    node = cluster.leader_of(vhost, "work")
    cluster.kill(node)                # SIGKILL its Erlang VM
    cluster.up()                      # the killed node rejoins
    cluster.clean()                   # stop every node, delete the data

The nodes are ``tests.support.brokernode.BrokerNode`` objects (same layout as
``deploy/rabbitmq/node.sh``): ``kill()``, ``ctl()``, ``url`` and ``management_url`` work on
them; starting goes through ``cluster.sh up`` so a node gets the cluster's configuration.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.support.brokernode import SHARED_PORTS, BrokerNode, BrokerNodeError
from tests.support.processes import REPO_ROOT

CLUSTER_SCRIPT = REPO_ROOT / "deploy" / "rabbitmq" / "cluster.sh"
AUTH = ("guest", "guest")


class ClusterError(RuntimeError):
    pass


def connection_of(role: str, pid: int | None = None) -> str:
    """The name of a process's connection in the management UI (``amqpq.settings.connection_name``)."""
    return f"amqpq {role} {socket.gethostname()}:{pid or os.getpid()}"


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class LocalCluster:
    """Three nodes ``<prefix>1..3@localhost`` on ports ``base+1..3`` (management +10000,
    distribution +20000), data under ``base_dir``."""

    def __init__(self, base_dir: Path, *, port_base: int = 5680, prefix: str = "rmq") -> None:
        self.base_dir = Path(base_dir)
        self.port_base = port_base
        self.prefix = prefix
        self.nodes = [
            BrokerNode(
                f"{prefix}{i}",
                port_base + i,
                port_base + 10000 + i,
                port_base + 20000 + i,
                self.base_dir,
            )
            for i in (1, 2, 3)
        ]

    @classmethod
    def on_free_ports(cls, base_dir: Path) -> LocalCluster:
        """A cluster with node names of its own and a port base whose nine ports are free."""
        prefix = f"t{secrets.token_hex(3)}n"
        for _ in range(50):
            # Below the kernel's ephemeral range (32768+), where clients' own ports come from.
            base = 10000 + secrets.randbelow(200) * 10
            ports = [base + offset + i for offset in (0, 10000, 20000) for i in (1, 2, 3)]
            if not set(ports) & SHARED_PORTS and _ports_free(ports):
                return cls(base_dir, port_base=base, prefix=prefix)
        raise ClusterError("no free port range for a test cluster")

    # -- the script ---------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            AMQPQ_CLUSTER_DIR=str(self.base_dir),
            AMQPQ_CLUSTER_PORT_BASE=str(self.port_base),
            AMQPQ_CLUSTER_NODE_PREFIX=self.prefix,
        )
        return env

    def script(self, command: str, *args: str, timeout: float = 300.0) -> str:
        """``deploy/rabbitmq/cluster.sh <command> [args]`` for this cluster; its output."""
        done = subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), command, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise ClusterError(
                f"cluster.sh {command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout + done.stderr

    def up(self) -> None:
        """Start the nodes that are not running and (re)join them; idempotent."""
        self.script("up")

    def ensure_up(self) -> None:
        """Start the nodes that are down (``cluster.sh start``: a killed member rejoins)."""
        stopped = [node.name for node in self.nodes if not node.running]
        if stopped:
            self.script("start", *stopped)

    def clean(self) -> None:
        """Stop every node and delete the cluster's data (``cluster.sh clean``)."""
        self.script("clean")
        for node in self.nodes:  # whatever the script could not stop gracefully
            if node.running:
                node.kill()

    def discard(self) -> None:
        """SIGKILL every node and delete the data: a test cluster needs no clean shutdown."""
        for node in self.nodes:
            if node.running:
                node.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- nodes ----------------------------------------------------------------------------

    def running(self) -> list[BrokerNode]:
        return [node for node in self.nodes if node.running]

    def node_named(self, erlang_name: str) -> BrokerNode:
        for node in self.nodes:
            if node.node == erlang_name:
                return node
        raise ClusterError(f"{erlang_name} is not a node of this cluster")

    def kill(self, node: BrokerNode, *, sync: bool = True) -> float:
        """SIGKILL the node's VM (a crash); the wall-clock time of the kill.

        A definition written just before the kill may still sit in mnesia's log: every
        node syncs it first (``sync=False`` when the test called ``sync_definitions()``
        itself, before its load started), or a queue the test declared can be gone after
        the restart.
        """
        if sync:
            self.sync_definitions()
        at = time.time()
        node.kill()
        return at

    def sync_definitions(self) -> None:
        for node in self.running():
            try:
                node.ctl("eval", "mnesia:sync_log().")
            except BrokerNodeError:
                continue

    def urls(self, vhost: str = "/", *, first: BrokerNode | None = None) -> str:
        """The comma-separated ``AMQPQ_URL`` of every node, ``first``'s URL first."""
        nodes = list(self.nodes)
        if first is not None:
            index = nodes.index(first)
            nodes = nodes[index:] + nodes[:index]
        path = quote(vhost, safe="")
        return ",".join(f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/{path}" for node in nodes)

    @property
    def management_url(self) -> str:
        """The management API of a running node (any node's API shows the whole cluster)."""
        for node in self.nodes:
            if node.running:
                return node.management_url
        raise ClusterError("no node of the cluster is running")

    # -- the management API -----------------------------------------------------------------

    @contextmanager
    def api(self) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=f"{self.management_url}/api", auth=AUTH, timeout=10.0) as client:
            yield client

    def create_vhost(self, name: str) -> None:
        quoted = quote(name, safe="")
        with self.api() as api:
            api.put(f"/vhosts/{quoted}").raise_for_status()
            api.put(
                f"/permissions/{quoted}/guest",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()

    def delete_vhost(self, name: str) -> None:
        with self.api() as api:
            api.delete(f"/vhosts/{quote(name, safe='')}")

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        with self.api() as api:
            response = api.get(f"/queues/{quote(vhost, safe='')}/{quote(name, safe='')}")
            response.raise_for_status()
            found: dict[str, Any] = response.json()
            return found

    def leader_of(self, vhost: str, queue: str) -> BrokerNode:
        """The node holding ``queue``: a quorum queue's or stream's leader, a classic queue's node."""
        info = self.queue(vhost, queue)
        return self.node_named(str(info.get("leader") or info["node"]))

    def connections(self, vhost: str) -> list[dict[str, Any]]:
        with self.api() as api:
            response = api.get(f"/vhosts/{quote(vhost, safe='')}/connections")
            response.raise_for_status()
            found: list[dict[str, Any]] = response.json()
            return found

    def nodes_of(self, vhost: str, name: str, timeout: float = 15.0) -> list[BrokerNode]:
        """The nodes the vhost's connections named ``name`` are on (``connection_of``), once each.

        Waits for at least one (the API lists a connection after its stats interval).
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = [
                    self.node_named(str(c["node"]))
                    for c in self.connections(vhost)
                    if (c.get("client_properties") or {}).get("connection_name") == name
                ]
            except httpx.HTTPError:
                found = []
            if found:
                return list(dict.fromkeys(found))  # a start-up connection of the same name
            if time.monotonic() > deadline:
                raise ClusterError(f"no connection named {name!r} on {vhost} in {timeout}s")
            time.sleep(0.2)
