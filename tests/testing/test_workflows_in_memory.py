"""Workflows under the test broker, queued (``run_all``) and eager: the cases of
tests/workflows/cases.py, which also run against RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from amqpq.testing import TestBroker
from tests.workflows.cases import CASES
from tests.workflows.flows import Flows


@pytest.mark.parametrize("eager", [False, True], ids=["queued", "eager"])
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_workflow_in_memory(
    case: Callable[..., None], eager: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWS_DIR", str(tmp_path))
    flows = Flows()
    with TestBroker(flows.app, eager=eager) as broker:
        case(flows, lambda: broker.run_all(fast_forward=True), tmp_path)
