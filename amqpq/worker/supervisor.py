"""``amqpq worker --workers N``: N independent worker processes under one command.

Each child is a complete worker (its own connection, event loop and pool), so
the AMQP work itself spreads over the cores, the way Celery's and Dramatiq's
default workers use one process per core. The supervisor declares the topology
once, forwards SIGTERM/SIGINT to the children (they apply the two-step
shutdown themselves), restarts a child that dies while not stopping, and exits
with the worst exit code of its children.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

__all__ = ["supervise"]

log = logging.getLogger("amqpq.worker")

_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Own session: a terminal's Ctrl-C reaches the supervisor only, which forwards it once.
    os.setsid()
    # Die with the supervisor (Linux): no orphaned workers if it is SIGKILLed.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def supervise(child_argv: list[str], count: int, *, cwd: str | None = None) -> int:
    """Run ``count`` copies of ``child_argv`` until they all stop; the worst exit code."""
    stopping = 0
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(child_argv, cwd=cwd, preexec_fn=_child_setup)

    children = [spawn() for _ in range(count)]
    log.info("supervisor started workers=%d pids=%s", count, ",".join(str(c.pid) for c in children))
    codes: list[int] = []
    restarts: dict[int, float] = {}
    try:
        while children:
            while received:
                signum = received.pop(0)
                stopping += 1
                name = signal.Signals(signum).name
                log.info("%s: forwarding to %d workers", name, len(children))
                for child in children:
                    if child.poll() is None:
                        # Second signal: make sure each child sees a second one too.
                        child.send_signal(signal.SIGTERM if stopping == 1 else signal.SIGINT)
            for child in list(children):
                code = child.poll()
                if code is None:
                    continue
                children.remove(child)
                if stopping:
                    codes.append(code)
                    continue
                # Died on its own: replace it, at most once a second per slot.
                log.error("worker pid=%d exited with %d; starting another", child.pid, code)
                wait = max(0.0, 1.0 - (time.monotonic() - restarts.get(child.pid, 0.0)))
                time.sleep(wait)
                replacement = spawn()
                restarts[replacement.pid] = time.monotonic()
                children.append(replacement)
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return max(codes, default=0)


def child_argv(args: list[str]) -> list[str]:
    """The command line of one supervised worker."""
    return [sys.executable, "-m", "amqpq", "worker", *args]
