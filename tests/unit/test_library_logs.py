"""The client libraries' log lines pass only while amqpq logs at debug level."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import aiormq.connection  # noqa: F401  (creates the library's loggers, as a connection would)
import pika.adapters.blocking_connection  # noqa: F401
import pytest

from amqpq.transport.library_logs import quiet_library_logs


@pytest.fixture
def amqpq_level() -> Iterator[logging.Logger]:
    """The ``amqpq`` logger, and the libraries' own levels as a fresh process has them
    (the CLI's set-up, run in-process by other tests, sets those)."""
    loggers = [logging.getLogger(name) for name in ("amqpq", "aiormq", "pika")]
    levels = [logger.level for logger in loggers]
    for logger in loggers[1:]:
        logger.setLevel(logging.NOTSET)
    yield loggers[0]
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.parametrize("library", ["aiormq.connection", "pika.adapters.blocking_connection"])
def test_library_lines_pass_only_at_debug(
    library: str, amqpq_level: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_library_logs()
    caplog.set_level(logging.DEBUG)
    amqpq_level.setLevel(logging.INFO)
    logging.getLogger(library).error("error when creating transport: %r", "refused")
    assert caplog.records == []

    amqpq_level.setLevel(logging.DEBUG)
    logging.getLogger(library).error("error when creating transport: %r", "refused")
    assert [r.name for r in caplog.records] == [library]


def test_amqpq_own_lines_are_untouched(
    amqpq_level: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_library_logs()
    caplog.set_level(logging.INFO)
    logging.getLogger("amqpq.transport").warning("lost the connection")
    assert [r.getMessage() for r in caplog.records] == ["lost the connection"]
