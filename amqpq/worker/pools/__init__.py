"""Execution pools: where a task's code runs.

- :mod:`~amqpq.worker.pools.base`: the :class:`Job` a pool runs and the :class:`Pool`
  protocol;
- :mod:`~amqpq.worker.pools.local`: :class:`LocalPool` (``threads``, ``async``,
  ``solo``), tasks in the worker process;
- :mod:`~amqpq.worker.pools.handoff`: :class:`SlotThreads`, the task threads of a
  local pool and the way outcomes come back to the event loop;
- :mod:`~amqpq.worker.pools.processes`: :class:`ProcessPool` (``processes``), child
  processes;
- :mod:`~amqpq.worker.pools.frames`: the frames between the worker and its children,
  used by both sides.
"""

from __future__ import annotations

from amqpq.worker.pools.base import Job, Pool
from amqpq.worker.pools.frames import read_frame, write_frame
from amqpq.worker.pools.handoff import SlotThreads
from amqpq.worker.pools.local import LocalPool
from amqpq.worker.pools.processes import ProcessPool

__all__ = ["Job", "LocalPool", "Pool", "ProcessPool", "SlotThreads", "read_frame", "write_frame"]
