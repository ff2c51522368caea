"""The developer scripts and broker deployment files: syntax, contracts, extra nodes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
import yaml

from tests.support.brokernode import BrokerNode, rabbitmq_available

ROOT = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = [
    ROOT / ".ci" / "run",
    *sorted((ROOT / "scripts").glob("*.sh")),
    *sorted((ROOT / "deploy" / "rabbitmq").glob("*.sh")),
]


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_parse_and_are_executable(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    if script.name != "lib.sh":
        assert os.access(script, os.X_OK), f"{script} is not executable"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "set -euo pipefail"
    assert lines[-1] == "./scripts/test.sh"


def test_compose_pins_a_rabbitmq_4_management_image_with_a_cluster_profile() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "rabbitmq" / "compose.yaml").read_text())
    services = compose["services"]
    single = services["rabbitmq"]
    assert single["image"].startswith("rabbitmq:4.")
    assert single["image"].endswith("-management")
    assert "127.0.0.1:5672:5672" in single["ports"]
    assert "127.0.0.1:15672:15672" in single["ports"]
    assert "healthcheck" in single
    assert "profiles" not in single
    cluster = {name: svc for name, svc in services.items() if "cluster" in svc.get("profiles", [])}
    assert sorted(cluster) == ["rmq1", "rmq2", "rmq3"]
    conf = (ROOT / "deploy" / "rabbitmq" / "cluster" / "rabbitmq.conf").read_text()
    assert "default_queue_type = quorum" in conf
    for i, name in enumerate(sorted(cluster), start=1):
        assert f"cluster_formation.classic_config.nodes.{i} = rabbit@{name}" in conf
        assert cluster[name]["hostname"] == name


def test_the_broker_script_refuses_a_port_that_does_not_speak_amqp() -> None:
    # The management port answers HTTP, not AMQP: the script must say so, not hang.
    result = subprocess.run(
        [str(ROOT / "scripts" / "broker.sh")],
        env={**os.environ, "AMQPQ_AMQP_PORT": "15672"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "does not speak AMQP" in result.stderr


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerNode]:
    if not rabbitmq_available():
        pytest.skip("extra broker nodes need the rabbitmq-server package")
    node = BrokerNode.with_free_ports(None, tmp_path_factory.mktemp("node"))
    node.start()
    yield node
    if node.running:
        node.kill()  # its data is thrown away: no need for a graceful stop


@pytest.mark.slow
def test_an_extra_node_keeps_persistent_messages_across_a_kill_and_a_restart(
    node: BrokerNode,
) -> None:
    # Given a durable queue holding a persistent message on an extra node
    conn = pika.BlockingConnection(pika.URLParameters(node.url))
    channel = conn.channel()
    channel.confirm_delivery()
    channel.queue_declare("survivor", durable=True)
    channel.basic_publish("", "survivor", b"still here", pika.BasicProperties(delivery_mode=2))
    conn.close()
    # The confirm covers the message; the queue's definition reaches disk through mnesia's
    # asynchronous log, which a kill right after the declare can beat on a busy machine.
    node.ctl("eval", "mnesia:sync_log().")

    # When the node is killed and started again
    node.kill()
    assert not node.running
    node.start()

    # Then the message is still there
    conn = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        _, _, body = conn.channel().basic_get("survivor", auto_ack=True)
    finally:
        conn.close()
    assert body == b"still here"


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_the_demo_runs_in_a_vhost_of_its_own_and_clean_removes_it() -> None:
    import httpx

    vhost = f"amqpq-demo-test-{os.getpid()}"
    env = {**os.environ, "AMQPQ_DEMO_VHOST": vhost}
    env.pop("AMQPQ_URL", None)
    with httpx.Client(base_url="http://127.0.0.1:15672", auth=("guest", "guest")) as api:

        def queues(in_vhost: str) -> set[str]:
            found = api.get(f"/api/queues/{quote(in_vhost, safe='')}")
            return {q["name"] for q in found.json()} if found.status_code == 200 else set()

        before = queues("/")
        try:
            demo = subprocess.run(
                [str(ROOT / "scripts" / "demo.sh")],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert demo.returncode == 0, demo.stderr[-2000:]
            assert f"the demo runs in vhost {vhost}" in demo.stderr
            assert "tasks.add(3, 4)            = 7" in demo.stdout
            assert "./scripts/demo.sh --clean" in demo.stdout
            assert {"default", "high_priority", "pdf", "default.dlq"} <= queues(vhost)
            assert queues("/") == before  # nothing of the demo's lands in the default vhost
        finally:
            clean = subprocess.run(
                [str(ROOT / "scripts" / "demo.sh"), "--clean"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        assert clean.returncode == 0, clean.stderr
        assert f"deleted vhost {vhost}" in clean.stderr
        assert api.get(f"/api/vhosts/{quote(vhost, safe='')}").status_code == 404
