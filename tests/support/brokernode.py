"""An extra RabbitMQ node for tests that must stop, kill or restart a broker.

It runs the distribution's package (``/usr/lib/rabbitmq/bin/rabbitmq-server``) with its
own node name, ports, data and Erlang cookie under ``base_dir``, beside the shared broker
on 5672, which it never touches. Start-up takes about 5 s here. ``guest`` may log in.

    @pytest.fixture
    def node(tmp_path: Path) -> Iterator[BrokerNode]:
        with BrokerNode.with_free_ports("delays", tmp_path) as node:
            yield node

    def test_a_delay_survives_a_broker_restart(node: BrokerNode) -> None:
        ...  # publish to node.url
        node.kill()      # SIGKILL, like a crash; node.stop() shuts down gracefully
        node.start()     # same data: durable queues and persistent messages are back

deploy/rabbitmq/node.sh does the same from the shell.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType

RABBITMQ_BIN = Path(os.environ.get("RMQ_BIN", "/usr/lib/rabbitmq/bin"))
SHARED_PORTS = frozenset({5672, 15672, 25672})


def rabbitmq_available() -> bool:
    """True when extra nodes can run here (the Debian/Ubuntu rabbitmq-server package)."""
    return (RABBITMQ_BIN / "rabbitmq-server").is_file()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BrokerNodeError(RuntimeError):
    pass


class BrokerNode:
    """One RabbitMQ node: ``start()``, ``stop()``, ``kill()``, ``restart()``, ``url``."""

    def __init__(
        self,
        name: str,
        amqp_port: int,
        mgmt_port: int,
        dist_port: int,
        base_dir: Path | str,
        *,
        extra_config: str = "",
        start_timeout: float = 60.0,
    ) -> None:
        ports = {amqp_port, mgmt_port, dist_port}
        if ports & SHARED_PORTS:
            raise ValueError(f"ports {sorted(ports & SHARED_PORTS)} belong to the shared broker")
        self.name = name.split("@", 1)[0]
        self.node = f"{self.name}@localhost"
        self.amqp_port = amqp_port
        self.mgmt_port = mgmt_port
        self.dist_port = dist_port
        self.base_dir = Path(base_dir)
        self.dir = self.base_dir / self.name
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self._launcher: subprocess.Popen[bytes] | None = None

    @classmethod
    def with_free_ports(
        cls,
        name: str | None,
        base_dir: Path | str,
        *,
        extra_config: str = "",
        start_timeout: float = 60.0,
    ) -> BrokerNode:
        """A node on free ports, named ``name`` (or a unique test name)."""
        return cls(
            name or f"amqpq-test-{uuid.uuid4().hex[:8]}",
            free_port(),
            free_port(),
            free_port(),
            base_dir,
            extra_config=extra_config,
            start_timeout=start_timeout,
        )

    # -- addresses --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.mgmt_port}"

    # -- life cycle -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._beam_pid() is not None

    def start(self) -> None:
        """Start the node (unless it runs) and wait until AMQP and the HTTP API answer."""
        if self._beam_pid() is None:
            self._write_files()
            self._launch()
        self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while True:
            if self._amqp_answers() and self._management_answers():
                return
            if self._launcher is not None and self._launcher.poll() is not None:
                raise BrokerNodeError(f"{self.node} exited during start-up\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise BrokerNodeError(f"{self.node} not ready in time\n{self._log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful shutdown (SIGTERM, as ``rabbitmqctl stop``); SIGKILL after ``timeout``."""
        pid = self._beam_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                self._wait_gone(pid, 10.0)
        self._reap_launcher()

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM, like a crash or a power cut."""
        pid = self._beam_pid()
        if pid is None:
            raise BrokerNodeError(f"{self.node} is not running")
        os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid, 10.0)
        self._reap_launcher()

    def restart(self) -> None:
        self.stop()
        self.start()

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n NODE ARGS...``; its output, or BrokerNodeError."""
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise BrokerNodeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def __enter__(self) -> BrokerNode:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"BrokerNode({self.node!r}, amqp={self.amqp_port}, mgmt={self.mgmt_port})"

    # -- internals --------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            HOME=str(self.base_dir / "home"),
            RABBITMQ_CONF_ENV_FILE=str(self.base_dir / "empty-env.conf"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_PID_FILE=str(self.dir / "rabbitmq.pid"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_CONFIG_FILES=str(self.dir / "conf.d"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.dir / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_CRASH_DUMP=str(self.dir / "erl_crash.dump"),
        )
        return env

    def _write_files(self) -> None:
        home = self.base_dir / "home"
        for path in (home, self.dir / "mnesia", self.dir / "log", self.dir / "conf.d"):
            path.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "empty-env.conf").touch()
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o600)
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.mgmt_port}\n"
            "loopback_users = none\n"
            "collect_statistics_interval = 1000\n"
            f"{self.extra_config}\n"
        )

    def _launch(self) -> None:
        self._reap_launcher()
        with (self.dir / "stdout.log").open("ab") as out:
            # The package's /usr/sbin wrapper would switch user and directories: run the
            # real script, in its own session so a Ctrl-C of the tests does not reach it.
            self._launcher = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                env=self._env(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _beam_pid(self) -> int | None:
        """The node's Erlang VM, recognised by its environment (node name and data dir)."""
        want = {
            f"RABBITMQ_NODENAME={self.node}".encode(),
            f"RABBITMQ_MNESIA_BASE={self.dir / 'mnesia'}".encode(),
        }
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "comm").read_text().strip() != "beam.smp":
                    continue
                environ = set((entry / "environ").read_bytes().split(b"\0"))
            except OSError:
                continue
            if want <= environ:
                return int(entry.name)
        return None

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    def _reap_launcher(self) -> None:
        if self._launcher is not None:
            try:
                self._launcher.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._launcher.kill()
                self._launcher.wait()
            self._launcher = None

    def _amqp_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=1) as sock:
                sock.settimeout(2)
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                frame = sock.recv(7)
        except OSError:
            return False
        return len(frame) == 7 and frame[0] == 1

    def _management_answers(self) -> bool:
        request = urllib.request.Request(f"{self.management_url}/api/overview")
        request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _log_tail(self, lines: int = 30) -> str:
        log = self.dir / "stdout.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {log})"
