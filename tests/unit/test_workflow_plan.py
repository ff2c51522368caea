"""The plan of a workflow (amqpq.workflow, amqpq.canvas): pure, no broker."""

from __future__ import annotations

import json

import pytest

from amqpq import ConfigError, chain, chord, group, signature
from amqpq.envelope import ChordNode, TaskEnvelope
from amqpq.workflow import downstream, freeze, launch, task_ids


def test_a_chain_starts_with_its_first_task_carrying_the_rest() -> None:
    node = freeze(chain(signature("t.a", (1,)), signature("t.b"), signature("t.c")).to_node())
    [call] = launch(node)
    assert call.name == "t.a"
    assert list(call.args) == [1]
    assert [n.task for n in call.options["chain"]] == ["t.b", "t.c"]
    # and the next step prepends the result, unless immutable
    rest = call.options["chain"]
    [following] = launch(rest[0], value=42, rest=rest[1:])
    assert list(following.args) == [42]
    [immutable] = launch(signature("t.d", (1,), immutable=True).to_node(), value=42)
    assert list(immutable.args) == [1]


def test_a_group_followed_by_a_task_is_a_chord_and_groups_in_headers_flatten() -> None:
    made = chain(group(signature("t.a"), signature("t.b")), signature("t.sum"))
    assert isinstance(made.tasks[0], chord)
    nested = chord([group(signature("t.a"), signature("t.b")), signature("t.c")], signature("t.s"))
    assert len(nested.header) == 3


def test_a_chord_starts_every_header_member_with_its_index() -> None:
    node = freeze(chord([signature("t.a"), signature("t.b")], signature("t.s")).to_node())
    assert isinstance(node, ChordNode)
    calls = launch(node)
    assert [(c.options["chord"].index, c.options["chord"].size) for c in calls] == [(0, 2), (1, 2)]
    assert {c.options["chord"].id for c in calls} == {node.id}
    assert node.id == task_ids(node.body)[0]  # the chord's id is its body's task id


def test_the_ids_a_failure_leaves_without_a_result() -> None:
    node = freeze(
        chain(
            signature("t.a"), chord([signature("t.h")], signature("t.s")), signature("t.c")
        ).to_node()
    )
    [first] = launch(node)
    after_first = downstream(first.options["chain"], None)
    assert len(after_first.same_error) == 3
    assert after_first.chord is None
    [member] = launch(first.options["chain"][0], rest=first.options["chain"][1:])
    after_member = downstream(member.options.get("chain"), member.options["chord"])
    assert after_member.same_error == []
    assert len(after_member.chord_ids) == 2  # the body and the task after the chord


def test_a_workflow_envelope_round_trips_through_json() -> None:
    node = freeze(chord([signature("t.a", (1,))], signature("t.s")).to_node())
    [call] = launch(node)
    envelope = TaskEnvelope(id="x", task=call.name, chord=call.options["chord"])
    again = TaskEnvelope.model_validate_json(envelope.model_dump_json(exclude_none=True))
    assert again.chord == envelope.chord


def test_signatures_are_data_and_refuse_what_cannot_travel() -> None:
    sig = signature("t.a", (1, 2), {"k": "v"}, {"countdown": 5}).set(priority=2)
    sig.link(signature("t.cb"))
    data = json.loads(json.dumps(sig.to_dict()))
    assert signature(data) == sig
    assert signature(data).to_node().link[0].task == "t.cb"
    with pytest.raises(ConfigError, match="unknown signature option"):
        sig.set(bogus=1)
    with pytest.raises(ConfigError, match="JSON"):
        signature("t.a", (object(),))
    with pytest.raises(ConfigError, match="body is missing"):
        chord([signature("t.a")]).to_node()
