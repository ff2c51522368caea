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
library when it is first used.
"""

from __future__ import annotations

from amqpq.app import App
from amqpq.envelope import Reply, TaskEnvelope, TaskState
from amqpq.errors import (
    AmqpqError,
    ArgumentsError,
    BrokerError,
    BrokerUnreachableError,
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
from amqpq.producer import AsyncProducer, Producer, TaskCall
from amqpq.registry import Request, Retry, Task, TaskContext, TaskOptions
from amqpq.rpc import AsyncResult
from amqpq.settings import Settings
from amqpq.topology.models import Topology

__version__ = "0.1.0"

__all__ = [
    "AmqpqError",
    "App",
    "ArgumentsError",
    "AsyncProducer",
    "AsyncResult",
    "BrokerError",
    "BrokerUnreachableError",
    "ConfigError",
    "DecodeError",
    "ExitCode",
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
]
