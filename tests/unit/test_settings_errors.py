"""A bad setting is one line that names the setting as the user gave it, never a password."""

from __future__ import annotations

import pytest

from amqpq.errors import ConfigError, ManagementAPIError
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


@pytest.mark.parametrize(
    ("url", "management"),
    [
        ("amqp://guest:guest@rabbit.internal/", "http://rabbit.internal:15672"),
        ("amqp://guest:guest@rabbit.internal:5672/prod", "http://rabbit.internal:15672"),
        ("amqps://guest:guest@rabbit.internal/", "https://rabbit.internal:15671"),
    ],
)
def test_the_management_api_is_derived_from_a_standard_amqp_port(
    url: str, management: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMQPQ_MANAGEMENT_URL", raising=False)
    assert load_settings(url=url).management_base_url == management


def test_another_amqp_port_needs_the_management_url_instead_of_a_guess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cluster's nodes on 5681-5683: deriving :15672 would read another broker.
    monkeypatch.delenv("AMQPQ_MANAGEMENT_URL", raising=False)
    settings = load_settings(
        url="amqp://guest:guest@127.0.0.1:5681,amqp://guest:guest@127.0.0.1:5682"
    )
    with pytest.raises(ManagementAPIError) as caught:
        settings.management_base_url  # noqa: B018
    assert str(caught.value) == (
        "cannot tell where the management API of amqp://guest@127.0.0.1:5681/%2F listens (it "
        "is derived only from the standard AMQP port 5672): set AMQPQ_MANAGEMENT_URL, e.g. "
        "http://host:15672"
    )
    monkeypatch.setenv("AMQPQ_MANAGEMENT_URL", "http://127.0.0.1:15681/")
    assert load_settings(url="amqp://127.0.0.1:5681").management_base_url == (
        "http://127.0.0.1:15681"
    )
