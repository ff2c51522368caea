"""Workflow cases run the same way in memory (tests/testing) and on RabbitMQ (here).

Each case takes the tasks (:class:`Flows`), ``drain`` (runs what was sent: the test
broker's ``run_all``, nothing on RabbitMQ where a worker runs them) and the folder the
tasks trace into.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from amqpq import (
    ChordError,
    GroupResult,
    RemoteTaskError,
    TaskRejectedError,
    chain,
    chord,
    group,
    signature,
)
from tests.support.waiting import eventually
from tests.workflows.flows import Flows, traced

Drain = Callable[[], None]
TIMEOUT = 30


def a_chain_prepends_each_result_and_links_parents(f: Flows, drain: Drain, folder: Path) -> None:
    r = chain(f.add.s(2, 2), f.add.s(4), f.mul.s(10)).apply_async()
    drain()
    assert r.get(timeout=TIMEOUT) == 80
    assert r.parent.get(timeout=TIMEOUT) == 8
    assert r.parent.parent.get(timeout=TIMEOUT) == 4
    assert r.parent.parent.parent is None
    piped = (f.add.s(1, 1) | f.mul.s(3) | f.upper.si("done")).apply_async()
    drain()
    assert piped.get(timeout=TIMEOUT) == "DONE"  # si(): the parent's result is not prepended


def a_group_answers_in_order(f: Flows, drain: Drain, folder: Path) -> None:
    g = group(f.add.s(i, i) for i in range(10)).apply_async()
    drain()
    assert isinstance(g, GroupResult)
    assert g.get(timeout=TIMEOUT) == [i * 2 for i in range(10)]
    assert g.ready()
    assert g.successful()
    assert g.completed_count() == 10
    assert len(g.results) == 10


def a_chord_runs_its_body_once_with_the_header_results(
    f: Flows, drain: Drain, folder: Path
) -> None:
    c = chord((f.add.s(i, i) for i in range(10)), f.tsum.s()).apply_async()
    drain()
    assert c.get(timeout=TIMEOUT) == 90
    assert c.parent.get(timeout=TIMEOUT) == [i * 2 for i in range(10)]
    piped = (group(f.noop.s(i) for i in range(5)) | f.collect.s("piped")).apply_async()
    drain()
    assert piped.get(timeout=TIMEOUT) == 5
    assert traced(folder, "piped") == [[0, 1, 2, 3, 4]]


def a_failing_chord_member_raises_chord_error_and_runs_the_errback(
    f: Flows, drain: Drain, folder: Path
) -> None:
    header = [f.noop.s(0), f.fail.s(1, message="member broke"), f.noop.s(2)]
    workflow = chord(header, f.collect.s("never"))
    workflow.link_error(f.record.s("chord-errback"))
    c = workflow.apply_async()
    drain()
    with pytest.raises(ChordError) as caught:
        c.get(timeout=TIMEOUT)
    assert "member 1 (flows.fail" in str(caught.value)
    assert "ValueError: member broke" in str(caught.value)
    errback = eventually(lambda: traced(folder, "chord-errback"), TIMEOUT, what="the errback")
    assert errback == [c.id]
    assert traced(folder, "never") == []


def a_failure_stops_a_chain_and_runs_its_errback(f: Flows, drain: Drain, folder: Path) -> None:
    flow = chain(f.add.s(1, 1), f.fail.s(), f.add.s(1))
    flow.link_error(f.record.s("chain-errback"))
    r = flow.apply_async()
    drain()
    with pytest.raises(RemoteTaskError) as caught:
        r.get(timeout=TIMEOUT)
    assert caught.value.type_name == "ValueError"
    assert r.parent.failed()
    errback = eventually(lambda: traced(folder, "chain-errback"), TIMEOUT, what="the errback")
    assert errback == [r.parent.id]


def a_chained_type_error_is_rejected_with_the_reason(f: Flows, drain: Drain, folder: Path) -> None:
    # upper returns text; add wants an int as its first argument
    r = chain(f.upper.s("x"), f.add.s(1)).apply_async()
    drain()
    with pytest.raises(TaskRejectedError) as caught:
        r.get(timeout=TIMEOUT)
    assert caught.value.type_name == "ArgumentsError"
    assert "flows.add" in caught.value.message or "add" in caught.value.message


def link_callbacks_get_the_result(f: Flows, drain: Drain, folder: Path) -> None:
    sig = f.add.s(1, 2)
    callback = f.record.s("linked")
    assert sig.link(callback) is callback  # returns the callback, as Celery's does
    r = sig.apply_async()
    drain()
    assert r.get(timeout=TIMEOUT) == 3
    assert eventually(lambda: traced(folder, "linked"), TIMEOUT, what="the callback") == [3]


def map_starmap_and_chunks(f: Flows, drain: Drain, folder: Path) -> None:
    mapped = f.upper.map(["a", "b"]).apply_async()
    starred = f.add.starmap([(1, 2), (3, 4)]).apply_async()
    chunked = f.add.chunks([(i, i) for i in range(5)], 2).apply_async()
    drain()
    assert mapped.get(timeout=TIMEOUT) == ["A", "B"]
    assert starred.get(timeout=TIMEOUT) == [3, 7]
    assert chunked.get(timeout=TIMEOUT) == [[0, 2], [4, 6], [8]]


def a_chord_inside_a_chain(f: Flows, drain: Drain, folder: Path) -> None:
    r = chain(f.add.s(1, 1), chord([f.add.s(1), f.add.s(2)], f.tsum.s()), f.mul.s(10)).apply_async()
    drain()
    assert r.get(timeout=TIMEOUT) == 70  # 2 -> [3, 4] -> 7 -> 70


def a_chain_inside_a_group(f: Flows, drain: Drain, folder: Path) -> None:
    g = group(chain(f.add.s(1, 1), f.mul.s(3)), f.add.s(5, 5)).apply_async()
    drain()
    assert g.get(timeout=TIMEOUT) == [6, 10]


def retried_members_keep_the_chord_waiting(f: Flows, drain: Drain, folder: Path) -> None:
    c = chord([f.flaky.s(1), f.flaky.s(2), f.noop.s(3)], f.tsum.s()).apply_async()
    drain()
    assert c.get(timeout=TIMEOUT) == 6
    r = chain(f.flaky.s(5), f.add.s(1)).apply_async()
    drain()
    assert r.get(timeout=TIMEOUT) == 6


def signatures_by_name_and_as_data(f: Flows, drain: Drain, folder: Path) -> None:
    by_name = f.app.signature("flows.add", args=(2, 3))
    again = signature(json.loads(json.dumps(by_name.to_dict())), app=f.app)
    assert again == by_name
    r = chain(again, signature("flows.mul", args=(10,), app=f.app)).apply_async()
    drain()
    assert r.get(timeout=TIMEOUT) == 50
    high = f.add.s(1, 1).set(queue="high_priority", priority=3).clone()
    assert high.options == {"queue": "high_priority", "priority": 3}
    r = high.apply_async()
    drain()
    assert r.get(timeout=TIMEOUT) == 2


def the_workflow_shape_travels_in_the_messages(f: Flows, drain: Drain, folder: Path) -> None:
    c = chord([f.noop.s(0), f.noop.s(1)], f.tsum.s()).apply_async()
    drain()
    assert c.get(timeout=TIMEOUT) == 1
    header = c.parent
    assert header.id == c.id  # the chord's id is its body's task id


CASES = [
    a_chain_prepends_each_result_and_links_parents,
    a_group_answers_in_order,
    a_chord_runs_its_body_once_with_the_header_results,
    a_failing_chord_member_raises_chord_error_and_runs_the_errback,
    a_failure_stops_a_chain_and_runs_its_errback,
    a_chained_type_error_is_rejected_with_the_reason,
    link_callbacks_get_the_result,
    map_starmap_and_chunks,
    a_chord_inside_a_chain,
    a_chain_inside_a_group,
    the_workflow_shape_travels_in_the_messages,
    retried_members_keep_the_chord_waiting,
    signatures_by_name_and_as_data,
]
