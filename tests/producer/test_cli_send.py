"""``amqpq send`` against the real broker, with the bare-pika fake worker answering."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from amqpq.cli import app as cli
from amqpq.errors import ExitCode
from amqpq.topology.models import Topology
from tests.producer.producer_helpers import TOPOLOGY
from tests.support.fake_worker import FakeWorker
from tests.support.pika_clients import get_message

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def topology_file(tmp_path: Path, declared: Topology) -> Path:
    path = tmp_path / "amqpq.yaml"
    # The loader refuses a route that leads nowhere, so the file has no "tasks.nowhere".
    routes = {k: v for k, v in TOPOLOGY["routes"].items() if k != "tasks.nowhere"}
    path.write_text(yaml.safe_dump({**TOPOLOGY, "routes": routes}))
    return path


@pytest.fixture
def send(
    topology_file: Path, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., object]:
    monkeypatch.delenv("AMQPQ_URL", raising=False)
    monkeypatch.delenv("AMQPQ_TOPOLOGY", raising=False)
    runner = CliRunner()

    def run(*args: str, url: str = broker_url, topology: Path = topology_file) -> object:
        return runner.invoke(cli, ["send", *args, "-f", str(topology), "--url", url])

    return run


def test_send_prints_the_task_id_and_parses_arguments_as_json_or_text(
    send: Callable[..., object], broker_url: str
) -> None:
    result = send("tasks.add", "3", "hello", "[1, 2]", "-k", 'z={"a": 1}', "-k", "w=text")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    task_id = result.stdout.strip()  # type: ignore[attr-defined]
    _, properties, body = get_message(broker_url, "default")
    envelope = json.loads(body)
    assert envelope["id"] == task_id
    assert envelope["args"] == [3, "hello", [1, 2]]
    assert envelope["kwargs"] == {"z": {"a": 1}, "w": "text"}
    assert properties.reply_to is None


def test_send_wait_prints_the_result_as_json(
    send: Callable[..., object], fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    result = send("tasks.add", "3", "4", "--wait", "--timeout", "5")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert result.stdout.strip() == "7"  # type: ignore[attr-defined]


def test_send_wait_on_a_failed_task_exits_1_with_the_remote_error(
    send: Callable[..., object], fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    result = send("tasks.fail", "--wait", "--timeout", "5")
    assert result.exit_code == ExitCode.FAILURE
    assert "ValueError: boom" in result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]


def test_send_wait_times_out_with_exit_4(
    send: Callable[..., object], fake_worker: Callable[..., FakeWorker]
) -> None:
    fake_worker()
    result = send("tasks.silent", "--wait", "--timeout", "0.3")
    assert result.exit_code == ExitCode.TIMEOUT
    assert "no result" in result.stderr  # type: ignore[attr-defined]


def test_send_of_an_unroutable_task_exits_6(send: Callable[..., object]) -> None:
    result = send("tasks.add", "1", "--routing-key", "no-such-key")
    assert result.exit_code == ExitCode.UNROUTABLE, result.stderr
    assert "reach no queue" in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("tasks.add", "-k", "novalue"), ExitCode.USAGE, "key=value"),
        (("tasks.add", "--eta", "tomorrow"), ExitCode.USAGE, "ISO 8601"),
        (("tasks.add", "--priority", "999"), ExitCode.USAGE, "priority"),
        (
            ("tasks.add", "--countdown", "1", "--eta", "2030-01-01T00:00:00"),
            ExitCode.USAGE,
            "not both",
        ),
    ],
)
def test_user_mistakes_are_one_line_without_traceback(
    send: Callable[..., object], args: tuple[str, ...], code: ExitCode, message: str
) -> None:
    result = send(*args)
    assert result.exit_code == code, result.output  # type: ignore[attr-defined]
    assert message in result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]


def test_a_missing_topology_file_and_an_unreachable_broker_are_reported(
    send: Callable[..., object], tmp_path: Path
) -> None:
    missing = send("tasks.add", topology=tmp_path / "nope.yaml")
    assert missing.exit_code == ExitCode.USAGE
    assert "nope.yaml" in missing.stderr  # type: ignore[attr-defined]
    unreachable = send("tasks.add", "1", url="amqp://guest:guest@127.0.0.1:1/")
    assert unreachable.exit_code == ExitCode.BROKER
    assert "cannot connect" in unreachable.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in unreachable.output  # type: ignore[attr-defined]
