"""``amqpq topology import-celery``: a Celery app's queues, routes and beat schedule as an
amqpq.yaml that validates and applies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kombu import Connection

from amqpq.topology.loader import load_topology
from tests.celery import shop_config
from tests.support.processes import amqpq_env

HERE = Path(__file__).resolve().parent


def amqpq(
    *args: str, cwd: Path = HERE, url: str = "amqp://127.0.0.1"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amqpq", *args],
        cwd=cwd,
        env=amqpq_env(url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_celery_apps_configuration_becomes_an_amqpq_yaml_that_applies(
    tmp_path: Path, broker_url: str
) -> None:
    imported = amqpq("topology", "import-celery", "shop_config:app")
    assert imported.returncode == 0, imported.stderr
    written = tmp_path / "amqpq.yaml"
    written.write_text(imported.stdout)

    topology = load_topology(written)
    assert {q.name for q in topology.queues} == {"default", "billing", "reports", "plain", "mail"}
    plain = topology.queue("plain")
    assert plain is not None
    assert [(b.exchange, b.routing_key) for b in plain.bindings] == [("default", "default")]
    assert not any(q.amqpq_arguments for q in topology.queues)  # as Celery declares them
    billing = topology.queue("billing")
    assert billing is not None
    assert billing.arguments == {"x-max-priority": 10}
    reports = topology.queue("reports")
    assert reports is not None
    assert reports.arguments == {"x-message-ttl": 60_000}  # kombu's seconds, RabbitMQ's ms
    routes = yaml.safe_load(imported.stdout)["routes"]
    assert routes["billing.*"] == {
        "exchange": "shop",
        "routing_key": "billing.#",
        "protocol": "celery",
    }
    assert routes["mail.send"] == {"exchange": "mail", "routing_key": "mail", "protocol": "celery"}
    assert routes["*"]["routing_key"] == "default"
    assert all(route.protocol == "celery" for route in topology.routes.values())
    nightly = topology.schedules["nightly-invoices"]
    assert (nightly.cron, nightly.timezone, nightly.args) == ("30 2 * * *", "Europe/Paris", [True])
    assert topology.schedules["heartbeat"].interval == 30
    # What could not be carried over is said, and how Celery must leave the declaring to amqpq.
    assert "route re.compile('legacy" in imported.stdout
    assert "a regular expression (amqpq matches globs)" in imported.stdout
    assert (
        "Queue('billing', Exchange('shop', type='topic'), routing_key='billing.#', no_declare=True)"
        in imported.stdout
    )

    # Celery has declared its queues already: amqpq declares them the same way.
    with Connection(broker_url) as connection:
        for queue in shop_config.app.conf.task_queues:
            queue.bind(connection.default_channel).declare()
    applied = amqpq("topology", "apply", "-f", str(written), url=broker_url)
    assert applied.returncode == 0, applied.stdout + applied.stderr


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no_such_module:app", "cannot import 'no_such_module'"),
        ("shop_config:nothing", "has no attribute 'nothing'"),
        ("interop_tasks:app", "not a Celery app"),
    ],
)
def test_a_wrong_module_or_app_is_one_line_and_exit_2(spec: str, says: str) -> None:
    result = amqpq("topology", "import-celery", spec)

    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr
