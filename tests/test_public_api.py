"""The public API: ``from amqpq import ...`` names, kept sorted and complete."""

from __future__ import annotations

import subprocess
import sys

import amqpq
from amqpq import errors

CORE = {
    "App",
    "AsyncProducer",
    "AsyncResult",
    "Producer",
    "Request",
    "Retry",
    "Settings",
    "Task",
    "TaskCall",
    "TaskContext",
    "TaskOptions",
    "TaskState",
    "Topology",
}


def test_all_is_sorted_and_without_duplicates() -> None:
    assert amqpq.__all__ == sorted(set(amqpq.__all__))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in amqpq.__all__ if not hasattr(amqpq, name)]
    assert not missing


def test_all_covers_the_core_api_and_every_error() -> None:
    assert set(amqpq.__all__) >= CORE
    assert set(errors.__all__) <= set(amqpq.__all__)


def test_every_public_class_imported_at_the_top_is_exported() -> None:
    public = {
        name
        for name, value in vars(amqpq).items()
        if not name.startswith("_") and isinstance(value, type)
    }
    assert public <= set(amqpq.__all__)


def test_importing_amqpq_loads_no_amqp_client_library() -> None:
    code = "import sys, amqpq; print(sorted(m for m in ('pika', 'aio_pika') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
