"""Plumbing shared by every system: vhosts, exact queue depths, worker processes, statistics.

Only the standard library and pika (an amqpq dependency, so the smoke test can run
this with the project's own venv); psutil when it is there, /proc otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

HERE = Path(__file__).resolve().parent
HOST = os.environ.get("BENCH_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("BENCH_AMQP_PORT", "5672"))
MGMT_PORT = int(os.environ.get("BENCH_MGMT_PORT", "15672"))
USER = os.environ.get("BENCH_USER", "guest")
PASSWORD = os.environ.get("BENCH_PASSWORD", "guest")


def amqp_url(vhost: str) -> str:
    return f"amqp://{USER}:{PASSWORD}@{HOST}:{AMQP_PORT}/{urllib.parse.quote(vhost, safe='')}"


# -- management API: vhosts only (its statistics lag; depths come from AMQP) -------------------


def _mgmt(method: str, path: str, body: dict[str, Any] | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://{HOST}:{MGMT_PORT}/api/{path}", data=data, method=method
    )
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and method == "DELETE":
            return 404
        raise RuntimeError(f"management API {method} {path}: {exc.code} {exc.read()!r}") from exc


def reset_vhost(vhost: str) -> None:
    """Delete the vhost (everything in it) and create it empty, with rights for our user."""
    quoted = urllib.parse.quote(vhost, safe="")
    _mgmt("DELETE", f"vhosts/{quoted}")
    _mgmt("PUT", f"vhosts/{quoted}", {})
    _mgmt(
        "PUT",
        f"permissions/{quoted}/{urllib.parse.quote(USER, safe='')}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )


def delete_vhost(vhost: str) -> None:
    _mgmt("DELETE", f"vhosts/{urllib.parse.quote(vhost, safe='')}")


# -- exact queue depths over AMQP ---------------------------------------------------------------


class Probe:
    """Passive queue.declare on a pika connection: ready count and consumer count, exact."""

    def __init__(self, vhost: str) -> None:
        self._params = pika.URLParameters(amqp_url(vhost))
        self._params.client_properties = {"connection_name": f"bench probe {os.getpid()}"}
        # Idle for minutes while other systems run: a blocking connection would miss
        # heartbeats and be dropped by the broker.
        self._params.heartbeat = 0
        self._connect()

    def _connect(self) -> None:
        self._connection = pika.BlockingConnection(self._params)
        self._channel = self._connection.channel()

    def _reopen(self) -> None:
        if self._channel.is_open:
            with contextlib.suppress(Exception):
                self._channel.close()
        self._channel = self._connection.channel()

    def depth(self, queue: str) -> tuple[int, int] | None:
        """(ready messages, consumers), or None when the queue does not exist (yet)."""
        try:
            frame = self._channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            self._reopen()
            return None
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelWrongStateError):
            self._connect()  # once; a second failure propagates
            return self.depth(queue)
        return int(frame.method.message_count), int(frame.method.consumer_count)

    def purge(self, queue: str) -> None:
        try:
            self._channel.queue_purge(queue)
        except pika.exceptions.ChannelClosedByBroker:
            self._reopen()
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelWrongStateError):
            self._connect()
            self._channel.queue_purge(queue)

    def wait_depth(self, queue: str, ready: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = self.depth(queue)
            if found is not None and found[0] >= ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"queue {queue}: expected {ready} ready, found {found}")
            time.sleep(0.02)

    def wait_consumer(self, queue: str, timeout: float, alive: Callable[[], bool]) -> float:
        """Poll until the queue has a consumer; returns time.perf_counter() of that poll."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.depth(queue)
            now = time.perf_counter()
            if found is not None and found[1] > 0:
                return now
            if not alive():
                raise RuntimeError("the worker exited before consuming")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no consumer on {queue} within {timeout:.0f}s")
            time.sleep(0.005)

    def time_drain(
        self, queue: str, total: int, timeout: float, alive: Callable[[], bool], interval: float
    ) -> float:
        """Seconds from the last poll that saw the queue untouched (all ``total`` ready, no
        consumer) to the first poll that sees no ready message. Polled every ``interval`` s:
        the figure may be long by up to one interval, never short."""
        deadline = time.monotonic() + timeout
        untouched: float | None = None
        started = False
        while True:
            found = self.depth(queue)
            now = time.perf_counter()
            if found is not None:
                ready, consumers = found
                if not started:
                    if consumers == 0 and ready >= total:
                        untouched = now
                    else:
                        started = True
                        if untouched is None:
                            raise RuntimeError(f"{queue}: consumed before the first poll")
                if started and ready == 0:
                    return now - untouched  # type: ignore[operator]
            if not alive():
                raise RuntimeError(f"the worker exited while draining ({found} left)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{queue} not drained within {timeout:.0f}s ({found} left)")
            time.sleep(interval)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()


# -- worker processes ---------------------------------------------------------------------------


class WorkerProcess:
    """A worker started as a subprocess in a session of its own, stopped by its PID."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], cwd: Path, label: str) -> None:
        self.label = label
        self.log = Path(os.environ.get("BENCH_LOG_DIR", "/tmp")) / f"bench-{label}.log"
        self._log_file = self.log.open("ab")
        self._log_file.write(f"\n=== {' '.join(argv)}\n".encode())
        self._log_file.flush()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            list(argv),
            cwd=str(cwd),
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the worker's PID; after ``timeout``, SIGKILL to its process group
        (the group is the one this worker leads: start_new_session)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Children that outlived their parent (a pool that ignored the TERM).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log_file.close()

    def tree_rss(self) -> int:
        """RSS of the worker and all its descendants, in bytes (shared pages counted per
        process, as ``ps`` shows them)."""
        try:
            import psutil
        except ImportError:
            return _proc_tree_rss(self.pid)
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def tree_pss(self) -> int:
        """PSS of the worker and its descendants, in bytes: each shared page is split among
        the processes sharing it, so a tree of forked workers counts its memory once."""
        total = 0
        for pid in _proc_tree(self.pid):
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        return total


def _proc_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _proc_tree_rss(pid: int) -> int:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    todo, total = [pid], 0
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * page
        todo.extend(children.get(current, []))
    return total


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQPQ_", "BENCH_URL"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


PYTHON = sys.executable


# -- results ------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured quantity over several runs."""

    unit: str
    samples: list[float] = field(default_factory=list)
    higher_is_better: bool = True
    error: str | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.samples) and self.error is None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit, "samples": self.samples}
        if self.samples:
            out.update(median=self.median, min=min(self.samples), max=max(self.samples))
        if self.error:
            out["error"] = self.error
        if self.note:
            out["note"] = self.note
        return out


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
