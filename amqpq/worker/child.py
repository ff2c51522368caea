"""A child process of the ``processes`` pool: ``python -m amqpq.worker.child MODULE[:APP]``.

It imports the app itself (no pickled state crosses the pipe), then reads
length-prefixed JSON frames on stdin and answers on the original stdout. Its
own prints go to stderr so they cannot corrupt the protocol. It ignores SIGINT
and SIGTERM: the worker decides when children stop (end of input), and kills
them for hard time limits or an immediate stop. The frames are described in
:mod:`amqpq.worker.pools.frames`, which both sides use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

from amqpq.worker.execution import (
    Outcome,
    Status,
    call_async_task,
    call_sync_task,
    error_info,
    request_from_json,
)
from amqpq.worker.hooks import Hooks
from amqpq.worker.limits import SoftTimeLimitExceeded
from amqpq.worker.loader import load_app
from amqpq.worker.pools.frames import read_frame, write_frame

log = logging.getLogger("amqpq.worker.child")


def _on_soft_limit(signum: int, frame: FrameType | None) -> None:
    raise SoftTimeLimitExceeded("soft time limit exceeded")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m amqpq.worker.child MODULE[:APP]", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_soft_limit)
    # The protocol keeps the original stdin/stdout; user code gets /dev/null and stderr.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    logging.basicConfig(
        level=os.environ.get("AMQPQ_LOGLEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s[child %(process)d] %(message)s",
        stream=sys.stderr,
    )

    try:
        app = load_app(argv[0], cwd=os.getcwd())
    except Exception as exc:
        print(f"error: cannot load -A {argv[0]}: {exc}", file=sys.stderr)
        write_frame(proto_out, {"op": "error", "message": str(exc)})
        return 3
    hooks = Hooks(app)
    write_frame(proto_out, {"op": "ready", "pid": os.getpid(), "tasks": app.registry.names()})
    loop: asyncio.AbstractEventLoop | None = None

    def progress(state: str, meta: dict[str, Any] | None) -> None:
        write_frame(proto_out, {"op": "progress", "state": state, "meta": meta})

    while True:
        try:
            message = read_frame(proto_in)
        except (OSError, ValueError):
            return 1
        if message is None:  # the worker closed our input: stop
            return 0
        if message.get("op") != "run":
            continue
        soft_limit = message.get("soft_time_limit")
        try:
            task = app.registry.get(str(message["task"]))
            request = request_from_json(message["request"])
            args, kwargs = task.parameters.from_wire(message["args"], message["kwargs"])
            if soft_limit:
                signal.setitimer(signal.ITIMER_REAL, float(soft_limit))
            if task.is_async:
                loop = loop or asyncio.new_event_loop()
                outcome = loop.run_until_complete(
                    call_async_task(task, args, kwargs, request, progress, hooks)
                )
            else:
                outcome = call_sync_task(task, args, kwargs, request, progress, hooks)
        except Exception as exc:
            outcome = Outcome(status=Status.FAILURE, error=error_info(exc))
        finally:
            if soft_limit:
                signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            write_frame(proto_out, {"op": "done", "outcome": outcome.to_json()})
        except OSError:  # the worker is gone
            return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
