"""amqpq: an AMQP-native task queue for Python on RabbitMQ.

```python
from amqpq import App
app = App("tasks")

@app.task
def add(x: int, y: int) -> int:
    return x + y

add.delay(3, 4).get(timeout=10)  # 7
```

Importing amqpq loads neither pika nor aio-pika: each producer loads its client
library when it is first used. The names below other than the errors are imported
on first access (PEP 562), so ``amqpq worker`` and ``import amqpq.codec`` pay only
for the modules they use.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from amqpq.errors import (
    AmqpqError,
    ArgumentsError,
    BrokerError,
    BrokerUnreachableError,
    ChordError,
    ConfigError,
    DecodeError,
    ExitCode,
    ManagementAPIError,
    MessageError,
    PublishError,
    PublishNackedError,
    RemoteTaskError,
    ResultTimeoutError,
    TaskExpiredError,
    TaskNotFoundError,
    TaskRejectedError,
    TaskRevokedError,
    TopologyConflictError,
    TopologyError,
    UnroutableError,
)

if _typing.TYPE_CHECKING:
    from amqpq.app import App, current_app, shared_task
    from amqpq.canvas import GroupResult, Signature, chain, chord, group, signature
    from amqpq.envelope import Reply, TaskEnvelope, TaskState
    from amqpq.producer import AsyncProducer, Producer
    from amqpq.registry import Request, Retry, Task, TaskContext, TaskOptions
    from amqpq.rpc import AsyncResult
    from amqpq.settings import Settings
    from amqpq.topology.models import Topology
    from amqpq.workflow import TaskCall

_LAZY = {
    "App": "amqpq.app",
    "GroupResult": "amqpq.canvas",
    "Signature": "amqpq.canvas",
    "chain": "amqpq.canvas",
    "chord": "amqpq.canvas",
    "group": "amqpq.canvas",
    "signature": "amqpq.canvas",
    "AsyncProducer": "amqpq.producer",
    "AsyncResult": "amqpq.rpc",
    "Producer": "amqpq.producer",
    "Reply": "amqpq.envelope",
    "Request": "amqpq.registry",
    "Retry": "amqpq.registry",
    "Settings": "amqpq.settings",
    "Task": "amqpq.registry",
    "TaskCall": "amqpq.workflow",
    "TaskContext": "amqpq.registry",
    "TaskEnvelope": "amqpq.envelope",
    "TaskOptions": "amqpq.registry",
    "TaskState": "amqpq.envelope",
    "Topology": "amqpq.topology.models",
    "current_app": "amqpq.app",
    "shared_task": "amqpq.app",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "AmqpqError",
    "App",
    "ArgumentsError",
    "AsyncProducer",
    "AsyncResult",
    "BrokerError",
    "BrokerUnreachableError",
    "ChordError",
    "ConfigError",
    "DecodeError",
    "ExitCode",
    "GroupResult",
    "ManagementAPIError",
    "MessageError",
    "Producer",
    "PublishError",
    "PublishNackedError",
    "RemoteTaskError",
    "Reply",
    "Request",
    "ResultTimeoutError",
    "Retry",
    "Settings",
    "Signature",
    "Task",
    "TaskCall",
    "TaskContext",
    "TaskEnvelope",
    "TaskExpiredError",
    "TaskNotFoundError",
    "TaskOptions",
    "TaskRejectedError",
    "TaskRevokedError",
    "TaskState",
    "Topology",
    "TopologyConflictError",
    "TopologyError",
    "UnroutableError",
    "chain",
    "chord",
    "current_app",
    "group",
    "shared_task",
    "signature",
]
