"""``amqpq worker --workers N``: N independent worker processes under one command.

Each child is a complete worker (its own connection, event loop and pool), so
the AMQP work itself spreads over the cores, the way Celery's and Dramatiq's
default workers use one process per core. The supervisor loads the app and
declares the topology once, then forks the workers (no second import: they
start in milliseconds and share the loaded code copy-on-write). It forwards
SIGTERM/SIGINT to them (they apply the two-step shutdown themselves), forks a
new one when one dies while not stopping, and exits with the worst exit code.
A worker that stops on a usage error (exit 2: e.g. its metrics port is taken)
would only fail the same way again: the supervisor then stops them all instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

from amqpq.errors import AmqpqError, ExitCode

__all__ = ["supervise"]

log = logging.getLogger("amqpq.worker")

_PR_SET_PDEATHSIG = 1


def _become_worker(run: Callable[[], int], index: int = 0) -> None:
    """In the forked child: own session (a terminal's Ctrl-C reaches the supervisor
    only, which forwards it once), die with the supervisor, run, never return."""
    code = 1
    try:
        # Which of the N workers this is (a replacement keeps the index): metrics port + index.
        os.environ["AMQPQ_WORKER_INDEX"] = str(index)
        os.setsid()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the supervisor died before prctl took effect
            os._exit(1)
        code = run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except AmqpqError as exc:  # a readable reason: one line, its own exit code
        log.error("worker process stopped: %s", exc)
        code = int(exc.exit_code)
    except BaseException:
        log.exception("worker process failed")
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _fork(run: Callable[[], int], index: int = 0) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns from here
        _become_worker(run, index)
    return pid


def supervise(run: Callable[[], int], count: int) -> int:
    """Fork ``count`` workers, each calling ``run()``; return the worst exit code."""
    stopping = 0
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: dict[int, float] = {}  # pid -> start time
    indexes: dict[int, int] = {}  # pid -> worker index (0..count-1)
    codes: list[int] = []
    try:
        for index in range(count):
            pid = _fork(run, index)
            children[pid] = time.monotonic()
            indexes[pid] = index
        log.info("supervisor started workers=%d pids=%s", count, ",".join(map(str, children)))
        while children:
            while received:
                signum = received.pop(0)
                stopping += 1
                log.info("%s: forwarding to %d workers", signal.Signals(signum).name, len(children))
                for pid in children:
                    # A second signal must reach each worker as a second one too.
                    _kill(pid, signal.SIGTERM if stopping == 1 else signal.SIGINT)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0 or pid not in children:
                time.sleep(0.1)
                continue
            started = children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                codes.append(code if code >= 0 else 1)
                continue
            if code == ExitCode.USAGE:
                log.error("worker pid=%d stopped on a usage error: stopping the others", pid)
                codes.append(code)
                stopping = 1
                for other in children:
                    _kill(other, signal.SIGTERM)
                continue
            log.error("worker pid=%d exited with %d; starting another", pid, code)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))  # no crash loop storm
            index = indexes.pop(pid, 0)
            new = _fork(run, index)
            children[new] = time.monotonic()
            indexes[new] = index
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return max(codes, default=0)


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
