"""Workflows under the test broker, queued (``run_all``) and eager: the cases of
tests/workflows/cases.py, which also run against RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from amqpq import ConfigError, chain, chord
from amqpq.testing import TestBroker
from tests.workflows.cases import CASES
from tests.workflows.flows import Flows, traced


@pytest.mark.parametrize("eager", [False, True], ids=["queued", "eager"])
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_workflow_in_memory(
    case: Callable[..., None], eager: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWS_DIR", str(tmp_path))
    flows = Flows()
    with TestBroker(flows.app, eager=eager) as broker:
        case(flows, lambda: broker.run_all(fast_forward=True), tmp_path)


def test_a_workflow_sent_with_ignore_result_runs_and_answers_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWS_DIR", str(tmp_path))
    flows = Flows()
    with TestBroker(flows.app) as broker:
        r = chain(flows.add.s(1, 1), flows.record.s("quiet")).apply_async(ignore_result=True)
        c = chord([flows.noop.s(1), flows.noop.s(2)], flows.collect.s("quiet-body")).apply_async(
            ignore_result=True
        )
        broker.run_all()
        assert traced(tmp_path, "quiet") == [2]
        assert traced(tmp_path, "quiet-body") == [[1, 2]]
        with pytest.raises(ConfigError, match="ignore_result"):
            r.get(timeout=1)
        with pytest.raises(ConfigError, match="ignore_result"):
            c.get(timeout=1)
