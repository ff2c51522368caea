"""The amqpq error tree.

Every error amqpq raises on purpose derives from :class:`AmqpqError`; the CLI
catches that base, prints one line and exits with the error's ``exit_code``.

::

    AmqpqError
    ├── ConfigError (ValueError)               settings or arguments that cannot work
    │   └── TopologyError                      the YAML file is wrong (file, field, line)
    │       └── TopologyConflictError          the broker disagrees with the file
    ├── BrokerError                            talking to RabbitMQ failed
    │   ├── BrokerUnreachableError (ConnectionError)
    │   ├── ManagementAPIError                 the management HTTP API failed or refused
    │   └── PublishError                       a publish was not safely taken
    │       ├── UnroutableError                mandatory publish came back: no queue bound
    │       └── PublishNackedError             the broker nacked the publish
    ├── MessageError                           a message that cannot be processed
    │   ├── DecodeError                        body/properties do not form an envelope
    │   └── ArgumentsError (ValueError)        arguments fail the task's type hints
    ├── TaskNotFoundError (LookupError)        no task registered under that name
    ├── RemoteTaskError                        the task raised: carries type, message, traceback
    │   ├── TaskRevokedError
    │   ├── TaskExpiredError
    │   ├── TaskRejectedError
    │   └── ChordError                         a member of a chord's header failed
    └── ResultTimeoutError (TimeoutError)      no result within the timeout

Library errors (pika, aio-pika, httpx) are mapped to these at the transport
boundary; nothing above the transport sees a client library's exception.
"""

from __future__ import annotations

__all__ = [
    "AmqpqError",
    "ArgumentsError",
    "BrokerError",
    "BrokerUnreachableError",
    "ChordError",
    "ConfigError",
    "DecodeError",
    "ExitCode",
    "ManagementAPIError",
    "MessageError",
    "PublishError",
    "PublishNackedError",
    "RemoteTaskError",
    "ResultTimeoutError",
    "TaskExpiredError",
    "TaskNotFoundError",
    "TaskRejectedError",
    "TaskRevokedError",
    "TopologyConflictError",
    "TopologyError",
    "UnroutableError",
]

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the ``amqpq`` command (documented in docs/operations.md)."""

    OK = 0
    FAILURE = 1  # the task failed, or a generic failure
    USAGE = 2  # bad arguments, settings or topology file
    BROKER = 3  # broker unreachable, refused, or management API failure
    TIMEOUT = 4  # no result in time
    CONFLICT = 5  # topology conflicts with the broker
    UNROUTABLE = 6  # the message reached no queue


class AmqpqError(Exception):
    """Base of every error amqpq raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE


class ConfigError(AmqpqError, ValueError):
    """Settings, URLs or command arguments that cannot work."""

    exit_code = ExitCode.USAGE


class TopologyError(ConfigError):
    """The topology file is invalid. ``problems`` holds one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems if problems is not None else [message]
        super().__init__(message)


class TopologyConflictError(TopologyError):
    """The broker holds objects that differ from the file (RabbitMQ would refuse them)."""

    exit_code = ExitCode.CONFLICT


class BrokerError(AmqpqError):
    """Talking to the broker failed."""

    exit_code = ExitCode.BROKER


class BrokerUnreachableError(BrokerError, ConnectionError):
    """No broker answered, or it refused the credentials or vhost."""


class ManagementAPIError(BrokerError):
    """The RabbitMQ management HTTP API did not answer or refused the request."""


class PublishError(BrokerError):
    """A publish was not confirmed by the broker."""


class UnroutableError(PublishError):
    """A mandatory publish was returned: no queue is bound for its exchange and key."""

    exit_code = ExitCode.UNROUTABLE


class PublishNackedError(PublishError):
    """The broker negatively acknowledged the publish (e.g. a full queue with reject-publish),
    also when sent again over ~1.4 s."""


class MessageError(AmqpqError):
    """A message that cannot be processed as a task."""


class DecodeError(MessageError):
    """The body or properties do not form a valid amqpq envelope."""


class ArgumentsError(MessageError, ValueError):
    """Arguments do not satisfy the task's signature or type hints."""

    exit_code = ExitCode.USAGE


class TaskNotFoundError(AmqpqError, LookupError):
    """No task is registered under that name."""

    exit_code = ExitCode.USAGE


class RemoteTaskError(AmqpqError):
    """The task failed on a worker. Carries the remote exception's type, message and traceback."""

    def __init__(
        self,
        type_name: str,
        message: str,
        traceback: str | None = None,
        task_id: str | None = None,
    ) -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        self.task_id = task_id
        super().__init__(f"{type_name}: {message}" if message else type_name)


class TaskRevokedError(RemoteTaskError):
    """The task was revoked before it ran."""


class TaskExpiredError(RemoteTaskError):
    """The task's expiry passed before a worker could run it."""


class TaskRejectedError(RemoteTaskError):
    """The worker rejected the message (bad input); it went to the dead-letter queue."""


class ChordError(RemoteTaskError):
    """A member of the chord's header failed (after its retries): the body did not run.
    The message names the member(s): index, task name and id, and their error."""


class ResultTimeoutError(AmqpqError, TimeoutError):
    """No result arrived within the timeout."""

    exit_code = ExitCode.TIMEOUT
