"""``amqpq send`` checks what it can before sending, and says what it could not check.

- with ``-A MODULE`` an unknown task name is refused at once and nothing is sent;
- with ``-A MODULE`` a bare token becomes the parameter's declared type (``2024`` for a
  ``str`` is the text "2024");
- without it, a name that only a glob routes is sent with a note that it was not checked;
- ``--wait`` on a queue no worker consumes says so at once, and again at the timeout.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
import yaml
from typer.testing import CliRunner, Result

from amqpq.cli import app as cli
from amqpq.errors import ExitCode
from amqpq.settings import Settings
from amqpq.topology.models import Topology
from amqpq.transport.declare import declare_topology_sync

pytestmark = pytest.mark.rabbitmq

TOPOLOGY = {
    "exchanges": [{"name": "tasks", "type": "direct"}],
    "queues": [
        {"name": "mail", "bindings": [{"exchange": "tasks", "routing_key": "mail"}]},
        {"name": "default", "bindings": [{"exchange": "tasks", "routing_key": "default"}]},
    ],
    "routes": {
        "notify.send_email": {"exchange": "tasks", "routing_key": "mail"},
        "*": {"exchange": "tasks", "routing_key": "default"},
    },
}

MODULE = """
from amqpq import App

app = App("notify")


@app.task(name="notify.send_email")
def send_email(to: str, year: str, count: int = 1) -> str:
    return f"{to} {year} {count}"
"""


@pytest.fixture
def project(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> str:
    """A declared topology file and a task module in the current folder; the module's name."""
    declare_topology_sync(settings, Topology.model_validate(TOPOLOGY))
    (tmp_path / "amqpq.yaml").write_text(yaml.safe_dump(TOPOLOGY))
    name = f"notify_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    for variable in ("AMQPQ_URL", "AMQPQ_TOPOLOGY"):
        monkeypatch.delenv(variable, raising=False)
    return name


@pytest.fixture
def send(broker_url: str, project: str) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        result = CliRunner().invoke(cli, ["send", *args, "--url", broker_url])
        assert "Traceback" not in result.output
        return result

    return run


@pytest.fixture
def bodies(broker_url: str) -> Iterator[Callable[[str], list[dict[str, object]]]]:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()

    def read(queue: str) -> list[dict[str, object]]:
        found = []
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            found.append(json.loads(body))

    yield read
    connection.close()


def test_an_unknown_task_name_is_refused_before_sending_when_the_app_is_given(
    send: Callable[..., Result], project: str, bodies: Callable[[str], list[dict[str, object]]]
) -> None:
    result = send("notify.send_emial", "ada@example.com", "-A", project)

    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.strip().splitlines() == [
        f"error: unknown task 'notify.send_emial': the App of -A {project} registers "
        "notify.send_email; nothing was sent"
    ]
    assert bodies("default") == []
    assert bodies("mail") == []


def test_a_bare_token_takes_the_declared_type_when_the_app_is_given(
    send: Callable[..., Result], project: str, bodies: Callable[[str], list[dict[str, object]]]
) -> None:
    result = send("notify.send_email", "ada@example.com", "2024", "-k", "count=3", "-A", project)

    assert result.exit_code == 0, result.output
    [envelope] = bodies("mail")
    assert envelope["args"] == ["ada@example.com", "2024"]  # text for the str parameter
    assert envelope["kwargs"] == {"count": 3}  # a number for the int one
    assert result.stderr == ""


def test_without_the_app_tokens_are_json_and_a_glob_routed_name_is_flagged_as_unchecked(
    send: Callable[..., Result], bodies: Callable[[str], list[dict[str, object]]]
) -> None:
    exact = send("notify.send_email", "ada@example.com", "2024")
    assert exact.exit_code == 0, exact.output
    assert exact.stderr == ""  # the topology names this task: nothing to flag
    [envelope] = bodies("mail")
    assert envelope["args"] == ["ada@example.com", 2024]

    globbed = send("notify.send_emial", "ada@example.com")
    assert globbed.exit_code == 0, globbed.output
    assert "note: task name 'notify.send_emial' not checked: it is routed by '*'" in (
        globbed.stderr
    )
    assert len(bodies("default")) == 1


def test_waiting_on_a_queue_nobody_consumes_says_so_at_once_and_at_the_timeout(
    send: Callable[..., Result],
) -> None:
    result = send("notify.send_email", "ada@example.com", "2024", "--wait", "--timeout", "1")

    assert result.exit_code == ExitCode.TIMEOUT
    lines = result.stderr.strip().splitlines()
    hint = "no worker consumes queue 'mail': the task waits there until one does"
    assert lines[0].startswith(f"warning: {hint}")
    assert lines[-1].startswith("error: ")
    assert hint in lines[-1]
    assert "-Q mail" in lines[-1]


def test_the_app_given_routes_with_its_own_topology_from_any_folder(
    tmp_path: Path,
    settings: Settings,
    broker_url: str,
    monkeypatch: pytest.MonkeyPatch,
    bodies: Callable[[str], list[dict[str, object]]],
) -> None:
    # Given a project package whose amqpq.yaml (beside its module) routes the task to
    # "mail", and a folder whose own amqpq.yaml sends everything to "default"
    declare_topology_sync(settings, Topology.model_validate(TOPOLOGY))
    package = f"proj_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "tasks.py").write_text(MODULE)
    (tmp_path / package / "amqpq.yaml").write_text(yaml.safe_dump(TOPOLOGY))
    elsewhere = {**TOPOLOGY, "routes": {"*": {"exchange": "tasks", "routing_key": "default"}}}
    (tmp_path / "amqpq.yaml").write_text(yaml.safe_dump(elsewhere))
    monkeypatch.chdir(tmp_path)
    for variable in ("AMQPQ_URL", "AMQPQ_TOPOLOGY"):
        monkeypatch.delenv(variable, raising=False)

    # When the task is sent with -A from that folder
    app_spec = f"{package}.tasks"
    command = ["send", "notify.send_email", "ada@example.com", "2024", "-A", app_spec]
    result = CliRunner().invoke(cli, [*command, "--url", broker_url])

    # Then it goes where the App's own code would send it
    assert result.exit_code == 0, result.output
    assert len(bodies("mail")) == 1
    assert bodies("default") == []
