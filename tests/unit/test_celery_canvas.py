"""Celery's canvas fields <-> amqpq's workflow nodes (amqpq/celery_canvas.py), without a
broker: Celery's signatures as task nodes, options that map and those that do not, and
the round trip back to a Celery message's ``embed``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from amqpq.celery_canvas import NotMappable, read_embed, task_names, write_embed
from amqpq.celery_wire import encode_celery_task
from amqpq.envelope import ChordMember, GroupNode, TaskEnvelope, TaskNode
from amqpq.errors import ConfigError


def sig(task: str, *args: Any, immutable: bool = False, **options: Any) -> dict[str, Any]:
    """A signature as Celery 5 writes it in a message."""
    return {
        "task": task,
        "args": list(args),
        "kwargs": {},
        "options": options,
        "subtask_type": None,
        "immutable": immutable,
    }


def test_celery_s_reversed_chain_becomes_amqpq_s_chain_next_task_first() -> None:
    embed = {"chain": [sig("c", task_id="3"), sig("b", task_id="2")], "callbacks": None}

    fields = read_embed(embed)

    assert [n.task for n in fields["chain"]] == ["b", "c"]
    assert set(fields) == {"chain"}


def test_options_that_map_are_kept_and_the_next_task_is_a_celery_message() -> None:
    options = {
        "task_id": "2",
        "reply_to": "oid",
        "queue": "high",
        "countdown": 3,
        "priority": 5,
        "root_id": "r",  # set again by the task that sends it
        "parent_id": "p",
        "serializer": "json",
        "expires": {"__type__": "datetime", "__value__": "2030-01-01T00:00:00+00:00"},
    }

    [node] = read_embed({"chain": [sig("b", 1, immutable=True, **options)]})["chain"]

    assert isinstance(node, TaskNode)
    assert node.immutable
    assert node.args == [1]
    assert node.options == {
        "protocol": "celery",
        "task_id": "2",
        "reply_to": "oid",
        "queue": "high",
        "countdown": 3,
        "priority": 5,
        "expires": "2030-01-01T00:00:00+00:00",
    }


def test_a_chain_member_without_an_id_gets_one_a_callback_does_not_need_one() -> None:
    fields = read_embed({"chain": [sig("b")], "callbacks": [sig("log")]})

    assert fields["chain"][0].options["task_id"]
    assert "task_id" not in fields["link"][0].options


def test_a_frozen_callback_is_answered_where_its_caller_waits() -> None:
    [node] = read_embed({"callbacks": [sig("log", task_id="l", reply_to="oid")]})["link"]

    assert node.options["ignore_result"] is False


def test_callbacks_nested_in_a_signature_s_options_are_its_link_and_link_error() -> None:
    member = sig("b", task_id="2", link=[sig("log")], link_error=[sig("alarm")])

    [node] = read_embed({"chain": [member]})["chain"]

    assert isinstance(node, TaskNode)
    assert [n.task for n in node.link] == ["log"]
    assert task_names([node]) == ["b", "log", "alarm"]


@pytest.mark.parametrize(
    ("embed", "named"),
    [
        ({"chord": sig("tsum")}, "embed.chord"),
        ({"chain": [{**sig("g"), "subtask_type": "group"}]}, "Celery group"),
        ({"callbacks": [{**sig("c"), "subtask_type": "chain"}]}, "Celery chain"),
        ({"chain": [sig("b", time_limit=5)]}, "time_limit=5"),
        ({"errbacks": [sig("b", serializer="pickle")]}, "serializer='pickle'"),
        ({"chain": [sig("b", queue={"name": "q"})]}, "option queue"),
        ({"chain": "b"}, "not a list"),
        ({"chain": [{"args": []}]}, "names no task"),
    ],
)
def test_what_cannot_map_is_named(embed: dict[str, Any], named: str) -> None:
    with pytest.raises(NotMappable, match=named.replace("(", r"\(")):
        read_embed(embed)


def test_nodes_written_back_read_as_the_same_nodes() -> None:
    fields = read_embed(
        {
            "chain": [sig("c", task_id="3", reply_to="oid"), sig("b", task_id="2", queue="q")],
            "callbacks": [sig("log")],
            "errbacks": [sig("alarm", immutable=True)],
        }
    )

    embed = write_embed(
        chain=fields["chain"],
        link=fields["link"],
        link_error=fields["link_error"],
        chord=None,
        reply_to="oid",
    )

    assert [s["task"] for s in embed["chain"]] == ["c", "b"]  # Celery's order again
    # A member without a reply_to is answered where this message is, as Celery freezes it.
    assert embed["chain"][1]["options"] == {"task_id": "2", "queue": "q", "reply_to": "oid"}
    again = read_embed(json.loads(json.dumps(embed)))
    assert again["link"] == fields["link"]
    assert again["link_error"] == fields["link_error"]
    assert again["chain"][0] == fields["chain"][0].model_copy(
        update={"options": {**fields["chain"][0].options, "reply_to": "oid"}}
    )
    assert again["chain"][1] == fields["chain"][1]


def test_an_envelope_s_chain_travels_in_the_celery_message_it_is_sent_as() -> None:
    envelope = TaskEnvelope(id="1", task="a", chain=[TaskNode(task="b", options={"task_id": "2"})])

    message = encode_celery_task(envelope, exchange="x", routing_key="k", reply_to="oid")

    _, _, embed = json.loads(message.body)
    assert embed["chain"] == [
        {
            "task": "b",
            "args": [],
            "kwargs": {},
            "options": {"task_id": "2", "reply_to": "oid"},
            "subtask_type": None,
            "immutable": False,
        }
    ]


def test_a_group_or_a_chord_cannot_be_sent_in_celery_s_format() -> None:
    group = TaskEnvelope(id="1", task="a", chain=[GroupNode(tasks=[TaskNode(task="b")])])
    member = TaskEnvelope(
        id="1", task="a", chord=ChordMember(id="c", index=0, size=1, body=TaskNode(task="b"))
    )

    for envelope in (group, member):
        with pytest.raises(ConfigError, match="Celery's message format"):
            encode_celery_task(envelope, exchange="x", routing_key="k")
