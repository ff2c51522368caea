"""Each process tries the broker URLs in an order of its own (shuffled), so a fleet given
one ``AMQPQ_URL`` spreads over a cluster's nodes; ``AMQPQ_FAILOVER_ORDER=given`` keeps
the order as written. The first URL as written still names the vhost and management API."""

from __future__ import annotations

import subprocess
import sys

import pytest

from amqpq.errors import ConfigError
from amqpq.settings import BrokerAddress, Settings, failover_order, load_settings

URLS = [f"amqp://guest:guest@127.0.0.1:{port}/prod" for port in (5681, 5682, 5683, 5684)]
LIST = ",".join(URLS)


def ports(addresses: list[BrokerAddress]) -> list[int]:
    return [a.port for a in addresses]


def test_a_process_keeps_one_order_of_all_the_urls() -> None:
    settings = Settings(url=LIST)
    order = ports(settings.connect_order())
    assert sorted(order) == [5681, 5682, 5683, 5684]
    assert ports(settings.connect_order()) == order  # the same on every (re)connect
    assert ports(Settings(url=LIST).connect_order()) == order  # and for every Settings
    # What the URLs say as written is untouched: vhost, management API address.
    assert ports(settings.addresses) == [5681, 5682, 5683, 5684]
    assert settings.primary.port == 5681


def test_processes_get_different_orders() -> None:
    addresses = Settings(url=LIST).addresses
    orders = {tuple(ports(failover_order(addresses, "shuffle", pid=pid))) for pid in range(50)}
    assert len(orders) > 10  # 24 permutations of 4 URLs


def test_real_processes_spread_over_the_urls() -> None:
    # Six interpreters, each printing the first URL it would try.
    code = (
        "from amqpq.settings import Settings; "
        f"print(Settings(url={LIST!r}).connect_order()[0].port)"
    )
    firsts = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(6)
    }
    assert len(firsts) > 1  # all six on one of four URLs: (1/4)^5 by chance


def test_the_given_order_is_kept_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQPQ_FAILOVER_ORDER", "given")
    assert ports(load_settings(url=LIST).connect_order()) == [5681, 5682, 5683, 5684]
    assert ports(Settings(url=LIST, failover_order="given").connect_order()) == [
        5681,
        5682,
        5683,
        5684,
    ]


def test_a_single_url_is_a_single_url() -> None:
    assert ports(Settings(url=URLS[0]).connect_order()) == [5681]


def test_an_unknown_order_is_one_readable_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQPQ_FAILOVER_ORDER", "round-robin")
    with pytest.raises(ConfigError) as caught:
        load_settings(url=LIST)
    assert str(caught.value) == (
        "invalid AMQPQ_FAILOVER_ORDER: Input should be 'shuffle' or 'given' (got 'round-robin')"
    )
