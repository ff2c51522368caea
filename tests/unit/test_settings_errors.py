"""A bad setting is one line that names the setting as the user gave it, never a password."""

from __future__ import annotations

import pytest

from amqpq.errors import ConfigError
from amqpq.settings import hide_password, load_settings


def test_an_http_url_given_as_the_broker_says_what_is_wrong_and_where_the_management_url_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AMQPQ_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_settings(url="http://guest:secret@localhost:15672/")
    message = str(caught.value)
    assert message == (
        "invalid broker URL 'http://guest:***@localhost:15672/': the scheme must be amqp:// "
        "or amqps:// (that looks like the management API's address: set it with "
        "AMQPQ_MANAGEMENT_URL)"
    )
    assert "secret" not in message
    assert "errors.pydantic.dev" not in message


def test_a_bad_variable_is_named_with_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQPQ_HEARTBEAT", "often")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        "invalid AMQPQ_HEARTBEAT: Input should be a valid integer, unable to parse string as "
        "an integer (got 'often')"
    )


def test_a_port_out_of_range_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMQPQ_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_settings(url="amqp://guest:secret@localhost:99999/")
    assert "secret" not in str(caught.value)
    assert str(caught.value).startswith("invalid broker URL 'amqp://guest:***@localhost:99999/'")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:secret@host/", "amqp://guest:***@host/"),
        ("amqp://user:p@ss@host:5672/v", "amqp://user:***@host:5672/v"),
        ("amqp://guest@host/", "amqp://guest@host/"),
        ("amqp://host/", "amqp://host/"),
        ("not a url", "not a url"),
    ],
)
def test_hide_password(url: str, shown: str) -> None:
    assert hide_password(url) == shown
