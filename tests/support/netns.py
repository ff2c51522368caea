"""A "host" of its own for a test process: a network namespace joined to this one by a veth
pair, with addresses on a private range the test assigns, and partitions made of
blackhole routes (link-down would send reconnects out of another route).

    host = WorkerHost.create()                   # needs root (CI runs as root)
    try:
        broker = BrokerNode(..., extra_config=host.listener_config(port))
        processes.start("worker", ..., wrapper=host.wrapper)
        host.partition(); ...; host.heal()
    finally:
        host.close()

Everything it makes lives in the namespace, or on its own veth end beside it, and goes
with ``close()``: deleting the namespace deletes the veth pair.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess

# RFC 2544's benchmarking range: never routed, unlikely to be in use on a CI machine.
_RANGE = "198.18"


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ip tool, a container without them)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def _address_in_use(prefix: str) -> bool:
    shown = _ip("-4", "addr", "show", check=False).stdout
    return f" {prefix}." in shown


class WorkerHost:
    """Namespace ``name`` holding ``inner_ip``; this side of the veth is ``outer_ip``."""

    def __init__(self, name: str, subnet: int) -> None:
        self.name = name
        self.outer_ip = f"{_RANGE}.{subnet}.1"
        self.inner_ip = f"{_RANGE}.{subnet}.2"
        self._outer = f"amqpqo{name[-6:]}"
        self._inner = f"amqpqi{name[-6:]}"
        self.partitioned = False

    @classmethod
    def create(cls) -> WorkerHost:
        """A new namespace and veth pair, up and addressed; NetnsUnavailable if not permitted."""
        if shutil.which("ip") is None:
            raise NetnsUnavailable("the ip tool (iproute2) is not installed")
        for _ in range(20):
            subnet = secrets.randbelow(250) + 1
            if not _address_in_use(f"{_RANGE}.{subnet}"):
                break
        else:
            raise NetnsUnavailable(f"no free /24 in {_RANGE}.0.0/16")
        host = cls(f"amqpq-host-{secrets.token_hex(3)}", subnet)
        _ip("netns", "add", host.name)
        try:
            host._wire()
        except BaseException:
            host.close()
            raise
        return host

    def _wire(self) -> None:
        _ip("link", "add", self._outer, "type", "veth", "peer", "name", self._inner)
        _ip("link", "set", self._inner, "netns", self.name)
        _ip("addr", "add", f"{self.outer_ip}/24", "dev", self._outer)
        _ip("link", "set", self._outer, "up")
        _ip("-n", self.name, "addr", "add", f"{self.inner_ip}/24", "dev", self._inner)
        _ip("-n", self.name, "link", "set", self._inner, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    @property
    def wrapper(self) -> list[str]:
        """The command prefix that runs a process on this host (it execs in place)."""
        return ["ip", "netns", "exec", self.name]

    def listener_config(self, port: int) -> str:
        """The rabbitmq.conf line that makes a node listen on this host's link too."""
        return f"listeners.tcp.2 = {self.outer_ip}:{port}"

    def partition(self) -> None:
        """Cut the host off: its packets to the broker side go nowhere (no RST, no ICMP)."""
        _ip("-n", self.name, "route", "add", "blackhole", f"{self.outer_ip}/32")
        self.partitioned = True

    def heal(self) -> None:
        _ip("-n", self.name, "route", "del", "blackhole", f"{self.outer_ip}/32")
        self.partitioned = False

    def close(self) -> None:
        """Delete the namespace (and with it the veth pair); processes still in it stay
        unreachable, so the test stops them first."""
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self._outer, check=False)
