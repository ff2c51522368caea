"""``python -m amqpq <command> ...`` subprocesses of a test: started with an environment,
watched through their log file, stopped by signal and PID.

One helper serves workers, beats and every other long-running command; the log lines
tests wait for (``worker started``, ``leading:``, ...) are the commands' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[2]
_BEAT_SENT = re.compile(r" sent schedule=(\S+) task=\S+ id=(\S+) ")


def amqpq_env(broker_url: str, **overrides: str) -> dict[str, str]:
    """The environment of an amqpq subprocess on the test's vhost.

    Unbuffered (the log is read while the process runs), no topology inherited from the
    caller's environment, and the repository on ``PYTHONPATH`` so a task module may
    import ``tests.support`` too.
    """
    env = {**os.environ, "AMQPQ_URL": broker_url, "PYTHONUNBUFFERED": "1"}
    env.pop("AMQPQ_TOPOLOGY", None)
    env["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if path
    )
    env.update(overrides)
    return env


def reconnected_marker(role: str, pid: int) -> str:
    """What the INFO line of a reconnect of ``pid``'s ``role`` connection ends with.

    ``reconnected to RabbitMQ at <url> after 0.4s (amqpq <role> <host>:<pid>), reconnects=1``:
    the role is followed by the process's name, so "worker" never matches "worker-replies".
    """
    import socket

    return f"(amqpq {role} {socket.gethostname()}:{pid}), reconnects="


class AmqpqProcess:
    """One ``python -m amqpq <command> ...`` subprocess with its output in a log file.

    With ``own_session`` it runs in a session of its own and ``stop()`` kills the whole
    session, so the processes a ``--workers N`` supervisor forked go too. ``wrapper`` runs
    it through a command that execs it in place (``ip netns exec NS``: another "host").
    """

    def __init__(
        self,
        command: str,
        args: Sequence[str],
        env: dict[str, str],
        log_path: Path,
        *,
        cwd: Path,
        own_session: bool = False,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.command = command
        self.args = list(args)
        self.log_path = log_path
        self.own_session = own_session
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "amqpq", command, *self.args],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )
        self.pid = self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _logged(self, text: str, count: int, deadline: float, timeout: float) -> bool:
        """Whether ``text`` is in the log ``count`` times; fails once the process exited or time is up."""
        if self.log().count(text) >= count:
            return True
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.command} exited ({self.process.returncode}) before logging {text!r}:\n"
                f"{self.log()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{self.command} did not log {text!r} x{count} in {timeout}s:\n{self.log()}"
            )
        return False

    async def wait_for_log(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while True:  # polling a file: nothing to await but time
            if self._logged(text, count, deadline, timeout):
                return
            await asyncio.sleep(0.05)

    def wait_for_log_blocking(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while not self._logged(text, count, deadline, timeout):
            time.sleep(0.05)

    async def started(self) -> Self:
        await self.wait_for_log(f"{self.command} started")
        return self

    def started_blocking(self) -> Self:
        self.wait_for_log_blocking(f"{self.command} started")
        return self

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code once it has stopped."""
        self.process.terminate()
        return self.process.wait(timeout)

    async def wait(self, timeout: float = 30.0) -> int:
        """The exit code, once the process has stopped by itself (or by a signal sent before)."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.command} still running after {timeout}s:\n{self.log()}"
                )
            await asyncio.sleep(0.05)
        return self.process.returncode

    def stop(self, grace: float = 0.0) -> None:
        """Gone for good: SIGTERM and ``grace`` seconds to finish first when asked, then SIGKILL."""
        if grace and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        if self.own_session:
            # The whole session, even when its leader is gone (a supervisor's workers).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        elif self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._log.close()

    # What an ``amqpq beat`` logged: one line per task it sent.

    def sent_ids(self) -> list[str]:
        """Task ids this beat logged as sent, in order."""
        return [m.group(2) for m in _BEAT_SENT.finditer(self.log())]

    async def wait_sent(self, count: int, timeout: float = 30.0) -> None:
        await self.wait_for_log(" sent schedule=", timeout, count)


class Processes:
    """The amqpq subprocesses of one test (the ``amqpq_processes`` fixture): all stopped at its end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[AmqpqProcess] = []

    def start(
        self,
        command: str,
        *args: str,
        env: dict[str, str],
        cwd: Path,
        own_session: bool = False,
        wrapper: Sequence[str] = (),
    ) -> AmqpqProcess:
        """Start ``amqpq <command> <args>``; its log is ``<command>-<n>.log`` in the test's tmp_path."""
        index = sum(1 for process in self.started if process.command == command)
        process = AmqpqProcess(
            command,
            args,
            env,
            self.log_dir / f"{command}-{index}.log",
            cwd=cwd,
            own_session=own_session,
            wrapper=wrapper,
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()
