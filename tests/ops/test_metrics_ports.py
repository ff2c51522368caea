"""Which port each worker process serves its metrics on, checked before forking (no broker)."""

from __future__ import annotations

import socket

import pytest

from amqpq.errors import ConfigError
from amqpq.metrics import WorkerMetrics, check_metrics_ports, metrics_port_for, metrics_ports


def test_worker_process_i_serves_on_the_base_port_plus_i() -> None:
    assert metrics_ports(9100, 4) == [9100, 9101, 9102, 9103]
    assert [metrics_port_for(9100, i) for i in range(4)] == metrics_ports(9100, 4)
    assert metrics_port_for(None, 3) is None


def test_a_range_past_the_last_port_is_refused_in_one_line() -> None:
    assert metrics_ports(65534, 2) == [65534, 65535]
    with pytest.raises(ConfigError, match=r"needs ports 65534-65536; ports go up to 65535"):
        metrics_ports(65534, 3)


def test_a_port_in_use_is_named_with_the_worker_process_that_would_fail() -> None:
    # Given a listener on the second port of the range
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = int(held.getsockname()[1])
        base = taken - 1

        # Then the check names that port and the worker process it belongs to
        with pytest.raises(ConfigError, match=rf"port {taken} \(worker process 1 of 2\)"):
            check_metrics_ports(base, 2, "127.0.0.1")


def test_free_ports_pass_the_check() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    assert check_metrics_ports(port, 1, "127.0.0.1") == [port]


def test_serving_on_a_port_out_of_range_is_a_config_error_not_a_crash() -> None:
    metrics = WorkerMetrics("vm:1", dict)
    with pytest.raises(ConfigError, match="port 65536 is out of range"):
        metrics.serve(65536)
