"""Every workflow primitive against the real broker, with no result store: the cases of
cases.py (which also run in memory and eagerly, tests/testing)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.processes import AmqpqProcess
from tests.workflows.cases import CASES
from tests.workflows.flows import Flows

pytestmark = pytest.mark.rabbitmq


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_workflow_on_rabbitmq(
    case: Callable[..., None],
    start_worker: Callable[..., AmqpqProcess],
    flows: Flows,
    traces: Path,
) -> None:
    start_worker("-c", "4").started_blocking()
    case(flows, lambda: None, traces)
