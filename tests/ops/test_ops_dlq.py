"""``amqpq dlq ...`` and ``amqpq purge`` against the real broker, each test in its own vhost."""

from __future__ import annotations

import importlib
import json

import pytest

from amqpq import codec
from tests.support.cli import Cli
from tests.support.pika_clients import PlainClient, envelope

pytestmark = pytest.mark.rabbitmq


def test_list_counts_the_dead_letters_of_every_work_queue(plain: PlainClient, cli: Cli) -> None:
    # Given three dead letters of the classic queue and one of the quorum queue
    for _ in range(3):
        plain.dead_letter("work")
    plain.dead_letter("qwork")

    # When listing
    document = cli.json("dlq", "list")
    table = cli("dlq", "list")

    # Then the counts are exact (no waiting for the management statistics)
    rows = {row["queue"]: row for row in document["queues"]}
    assert rows["work"] == {
        "queue": "work",
        "dead_letter_queue": "work.dlq",
        "type": "classic",
        "messages": 3,
        "exists": True,
    }
    assert rows["qwork"]["messages"] == 1
    assert rows["qwork"]["type"] == "quorum"
    assert table.exit_code == 0
    assert "work.dlq" in table.stdout
    assert "4 dead letter(s) in 2 of 2 queues" in table.stdout


@pytest.mark.parametrize("queue", ["work", "qwork"])
def test_show_reads_the_reasons_without_consuming_and_keeps_the_order(
    plain: PlainClient, cli: Cli, queue: str
) -> None:
    ids = [plain.dead_letter(queue, retries=i, reason="max_retries_exceeded") for i in range(5)]

    document = cli.json("dlq", "show", queue, "--limit", "3")
    text = cli("dlq", "show", f"{queue}.dlq")

    assert document["messages"] == 5
    assert [letter["task_id"] for letter in document["letters"]] == ids[:3]
    first = document["letters"][0]
    assert first["reason"] == "max_retries_exceeded"
    assert first["source"] == "amqpq"
    assert first["error_type"] == "ValueError"
    assert first["error_message"] == f"boom {ids[0]}"
    assert first["task"] == "ops.fragile"
    assert first["retries"] == 0
    assert document["letters"][2]["retries"] == 2
    assert (first["original_queue"], first["original_exchange"], first["original_routing_key"]) == (
        queue,
        "ops",
        queue,
    )
    assert first["dead_at"] is not None
    assert text.exit_code == 0
    assert f"{queue}.dlq: 5 dead letter(s) (not consumed)" in text.stdout
    assert "max_retries_exceeded  ValueError: boom" in text.stdout
    # Nothing was consumed, and the letters are still in their order
    assert plain.count(f"{queue}.dlq") == 5
    assert plain.ids(f"{queue}.dlq") == ids


def test_replay_sends_letters_back_to_their_route_with_retries_reset(
    plain: PlainClient, cli: Cli
) -> None:
    ids = [plain.dead_letter("work", retries=3) for _ in range(3)]

    result = cli("dlq", "replay", "work")

    assert result.exit_code == 0, result.output
    assert "replayed 3 dead letter(s) from work.dlq" in result.stdout
    assert f"replayed {ids[0]} (ops.fragile) -> exchange 'ops' key 'work'" in result.stdout
    assert plain.count("work.dlq") == 0
    back = plain.take_all("work")
    assert [p.message_id for _, p, _ in back] == ids
    for method, properties, body in back:
        assert method.exchange == "ops"
        assert method.routing_key == "work"
        assert json.loads(body)["retries"] == 0
        headers = properties.headers
        assert headers[codec.HEADER_TASK] == "ops.fragile"
        assert not [h for h in headers if h.startswith("amqpq-dead") or h.startswith("amqpq-error")]
        assert not [h for h in headers if h.startswith("amqpq-original") or h.startswith("x-")]
        assert properties.delivery_mode == 2


def test_replay_of_a_broker_dead_letter_uses_x_death(plain: PlainClient, cli: Cli) -> None:
    # Given a message the broker dead-lettered itself (rejected without requeue)
    task_id, body = envelope(retries=2)
    plain.publish("ops", "work", body, task_id)
    method, _, _ = plain.channel.basic_get("work", auto_ack=False)
    plain.channel.basic_reject(method.delivery_tag, requeue=False)
    plain.wait_count("work.dlq", 1)

    [letter] = cli.json("dlq", "show", "work")["letters"]
    assert letter["source"] == "broker"
    assert letter["reason"] == "rejected"
    assert (
        letter["original_queue"],
        letter["original_exchange"],
        letter["original_routing_key"],
    ) == (
        "work",
        "ops",
        "work",
    )

    result = cli("dlq", "replay", "work")
    assert result.exit_code == 0, result.output
    [(method, properties, body)] = plain.take_all("work")
    assert properties.message_id == task_id
    assert "x-death" not in properties.headers
    assert not [h for h in properties.headers if h.startswith("x-first-death")]
    assert json.loads(body)["retries"] == 0
    assert plain.count("work.dlq") == 0


def test_a_letter_whose_route_leads_nowhere_stays_in_the_dead_letter_queue(
    plain: PlainClient, cli: Cli
) -> None:
    lost = plain.dead_letter("work", routing_key="no-such-key")
    good = plain.dead_letter("work")
    last = plain.dead_letter("work", exchange="no-such-exchange")

    result = cli("dlq", "replay", "work")

    assert result.exit_code == 6
    assert f"error: {lost} (ops.fragile): no queue is bound for exchange 'ops'" in result.stderr
    assert "left in work.dlq" in result.stderr
    assert (
        f"error: {last} (ops.fragile): exchange 'no-such-exchange' does not exist" in result.stderr
    )
    assert "replayed 1 dead letter(s) from work.dlq; 2 could not be replayed" in result.stdout
    assert plain.ids("work") == [good]
    assert plain.ids("work.dlq") == [lost, last]


def test_replay_picks_letters_by_id_or_task_and_leaves_the_others_in_order(
    plain: PlainClient, cli: Cli
) -> None:
    ids = [plain.dead_letter("qwork") for _ in range(3)]
    other = plain.dead_letter("qwork", task="ops.other")

    by_id = cli("dlq", "replay", "qwork", "--id", ids[1])
    by_task = cli("dlq", "replay", "qwork", "--task", "ops.other")
    nothing = cli("dlq", "replay", "qwork", "--id", "nope")

    assert by_id.exit_code == 0, by_id.output
    assert "3 not matching left in place" in by_id.stdout
    assert by_task.exit_code == 0
    assert nothing.exit_code == 1
    assert "no dead letter in qwork.dlq matched" in nothing.stderr
    assert plain.ids("qwork") == [ids[1], other]
    assert plain.ids("qwork.dlq") == [ids[0], ids[2]]


def test_dlq_purge_asks_and_refuses_without_a_terminal(plain: PlainClient, cli: Cli) -> None:
    for _ in range(2):
        plain.dead_letter("work")

    refused = cli("dlq", "purge", "work")
    assert refused.exit_code == 2
    assert "refusing to purge without confirmation" in refused.stderr
    assert "pass --yes" in refused.stderr
    assert plain.count("work.dlq") == 2

    purged = cli("dlq", "purge", "work", "--yes")
    assert purged.exit_code == 0
    assert purged.stdout.strip() == "purged 2 dead letter(s) from work.dlq"
    assert plain.count("work.dlq") == 0


def test_purge_empties_a_work_queue_only_with_confirmation(plain: PlainClient, cli: Cli) -> None:
    for _ in range(3):
        task_id, body = envelope()
        plain.publish("ops", "work", body, task_id)

    refused = cli("purge", "work")
    assert refused.exit_code == 2
    assert plain.count("work") == 3

    purged = cli("purge", "work", "-y")
    assert purged.exit_code == 0
    assert purged.stdout.strip() == "purged 3 message(s) from 'work'"
    assert plain.count("work") == 0

    unknown = cli("purge", "nope", "--yes")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: queue 'nope' is not in the topology")


def test_errors_are_one_line_with_an_exit_code(cli: Cli, declared: object, broker_url: str) -> None:
    unknown = cli("dlq", "show", "nope")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: 'nope' is not a work queue of the topology")
    assert len(unknown.stderr.splitlines()) == 1

    down = cli("dlq", "list", env={"AMQPQ_URL": "amqp://guest:guest@127.0.0.1:1/"})
    assert down.exit_code == 3
    assert "connection refused" in down.stderr
    assert len(down.stderr.splitlines()) == 1

    wrong = cli("dlq", "list", env={"AMQPQ_URL": broker_url.replace("guest:guest", "guest:wrong")})
    assert wrong.exit_code == 3
    assert "refused the credentials for user 'guest'" in wrong.stderr

    no_api = cli("status", env={"AMQPQ_MANAGEMENT_URL": "http://127.0.0.1:1"})
    assert no_api.exit_code == 3
    assert "management API at http://127.0.0.1:1 did not answer" in no_api.stderr


def test_on_a_terminal_purge_asks_and_a_no_keeps_the_messages(
    plain: PlainClient, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (amqpq.cli.purge is also the name of the command function: patch the module itself)
    monkeypatch.setattr(importlib.import_module("amqpq.cli.purge"), "is_interactive", lambda: True)
    plain.dead_letter("work")

    declined = cli("dlq", "purge", "work", input="n\n")
    assert declined.exit_code == 1
    assert "Delete 1 dead letter(s) from 'work.dlq'" in declined.stdout
    assert "nothing purged" in declined.stdout
    assert plain.count("work.dlq") == 1

    accepted = cli("dlq", "purge", "work", input="y\n")
    assert accepted.exit_code == 0
    assert "purged 1 dead letter(s) from work.dlq" in accepted.stdout
    assert plain.count("work.dlq") == 0
