"""The client libraries' own log lines, shown only when amqpq logs at debug level.

aio-pika, aiormq and pika log every failed connection attempt and every lost
connection themselves, at WARNING or ERROR and often with a traceback
(``error when creating transport: <AMQPConnectionError ...>``), before amqpq
says the same in one line of its own. A process that configured no logging
still prints them (Python's last-resort handler shows WARNING and above). So
each of the libraries' loggers gets a filter that lets a record through only
while the ``amqpq`` logger is enabled for DEBUG: ``--loglevel debug`` (or
``logging.getLogger("amqpq").setLevel(logging.DEBUG)``) shows them again,
tracebacks included. Library-free: the loggers are found by name.
"""

from __future__ import annotations

import logging

__all__ = ["LIBRARY_LOGGERS", "quiet_library_logs"]

LIBRARY_LOGGERS = ("aio_pika", "aiormq", "pika")

_amqpq = logging.getLogger("amqpq")


class _OnlyWhenAmqpqDebugs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _amqpq.isEnabledFor(logging.DEBUG)


_FILTER = _OnlyWhenAmqpqDebugs()
_quieted: set[str] = set()


def quiet_library_logs() -> None:
    """Filter the loggers the client libraries have created so far (idempotent).

    A logger's filters apply only to records created on that very logger, not to
    those its children pass up, so every logger of the libraries gets one. Called
    before each connection attempt: by then the library that makes it is imported
    and its loggers exist.
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            name not in _quieted
            and isinstance(logger, logging.Logger)  # not a placeholder of a parent name
            and name.split(".", 1)[0] in LIBRARY_LOGGERS
        ):
            logger.addFilter(_FILTER)
            _quieted.add(name)
