"""Client library errors are mapped once per library, in one wording; a publish caught by a
connection loss is retried once."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

import aiormq.exceptions
import pika.exceptions
import pytest

from amqpq.errors import BrokerUnreachableError, PublishError
from amqpq.settings import Settings
from amqpq.transport import aio_mapping, pika_mapping
from amqpq.transport.aio import AsyncBroker, retry_once_after_connection_loss
from amqpq.transport.blocking import open_blocking_connection
from amqpq.transport.declare import connect_for_topology
from amqpq.transport.wording import socket_reason

UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (ConnectionRefusedError(), "connection refused"),
        (TimeoutError(), "timed out"),
        (OSError(errno.ECONNREFUSED, "Connect call failed"), "connection refused"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "unknown host 'nohost'"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "no route to host"),
        (ValueError("not a socket error"), None),
    ],
)
def test_socket_failures_read_the_same_from_every_library(
    exc: BaseException, words: str | None
) -> None:
    assert socket_reason(exc, "nohost") == words


def test_aiormq_errors_keep_their_errno_and_reply_codes() -> None:
    address = Settings(url="amqp://ada:secret@h/prod").addresses[0]

    refused = aiormq.exceptions.AMQPConnectionError(errno.ECONNREFUSED, "Connect call failed")
    assert aio_mapping.describe(refused) == "connection refused"
    unknown = aiormq.exceptions.AMQPConnectionError(socket.EAI_NONAME, "Name or service not known")
    assert aio_mapping.describe(unknown, address) == "unknown host 'h'"
    forced = aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED - broker shutdown")
    assert "unknown error" not in aio_mapping.describe(forced).lower()
    # A connection the broker closed reads as the broker's own reason.
    assert aio_mapping.describe(forced) == "CONNECTION_FORCED - broker shutdown"
    assert aio_mapping.describe(
        aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED"), address
    ) == ("the broker refused the credentials for user 'ada'")
    assert aio_mapping.describe(aiormq.exceptions.ConnectionNotAllowed(530, "x"), address) == (
        "vhost 'prod' does not exist or user 'ada' may not use it"
    )


def test_the_brokers_reason_is_taken_out_of_an_aiormq_channel_close() -> None:
    exc = aiormq.exceptions.ChannelPreconditionFailed(
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type'"
    )
    assert aio_mapping.reply_text(exc) == "inequivalent arg 'x-queue-type'"


def test_pika_errors_are_unwrapped_to_the_socket_error_underneath() -> None:
    wrapped = pika.exceptions.AMQPConnectionError(
        pika.exceptions.AMQPConnectionError(ConnectionRefusedError())
    )
    assert pika_mapping.describe(wrapped) == "connection refused"
    closed = pika.exceptions.ChannelClosedByBroker(404, "NOT_FOUND - no queue 'q'")
    assert pika_mapping.describe(closed) == "404 NOT_FOUND - no queue 'q'"


class _Broker:
    def __init__(self) -> None:
        self.waited: list[float] = []

    async def wait_ready(self, timeout: float = 30.0) -> None:
        self.waited.append(timeout)


async def test_a_publish_is_retried_once_after_the_connection_comes_back() -> None:
    broker = _Broker()

    async def again() -> int:
        return 7

    result = await retry_once_after_connection_loss(
        broker,  # type: ignore[arg-type]
        again,
        timeout=None,
    )

    assert result == 7
    assert broker.waited == [30.0]


async def test_a_second_connection_loss_is_a_publish_error() -> None:
    broker = _Broker()

    async def again() -> None:
        raise aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED - shutdown")

    with pytest.raises(PublishError, match=r"^publish failed, connection lost: "):
        await retry_once_after_connection_loss(
            broker,  # type: ignore[arg-type]
            again,
            timeout=5,
        )
    assert broker.waited == [5]


async def test_an_error_other_than_a_connection_loss_is_not_retried() -> None:
    async def again() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await retry_once_after_connection_loss(_Broker(), again, timeout=1)  # type: ignore[arg-type]


async def _aio_broker(settings: Settings) -> None:
    broker = AsyncBroker(settings, "test")
    try:
        await broker.connect()
    finally:
        await broker.close()


async def _aio_topology(settings: Settings) -> None:
    await connect_for_topology(settings)


async def _pika(settings: Settings) -> None:
    open_blocking_connection(settings, "amqpq test", 5.0)


@pytest.mark.rabbitmq
@pytest.mark.parametrize("connect", [_aio_broker, _aio_topology, _pika])
async def test_every_connection_opener_says_the_same_about_an_unreachable_port(
    connect: Callable[[Settings], object],
) -> None:
    with pytest.raises(BrokerUnreachableError) as caught:
        await connect(Settings(url=UNREACHABLE))  # type: ignore[misc]

    assert str(caught.value) == (
        "cannot connect to RabbitMQ: amqp://guest@127.0.0.1:1/%2F: connection refused"
    )


@pytest.mark.rabbitmq
@pytest.mark.parametrize("connect", [_aio_broker, _aio_topology, _pika])
async def test_every_connection_opener_names_the_user_whose_password_was_refused(
    connect: Callable[[Settings], object],
) -> None:
    with pytest.raises(BrokerUnreachableError) as caught:
        await connect(Settings(url="amqp://guest:wrong@127.0.0.1:5672/"))  # type: ignore[misc]

    assert str(caught.value) == (
        "cannot connect to RabbitMQ: amqp://guest@127.0.0.1:5672/%2F: "
        "the broker refused the credentials for user 'guest'"
    )
