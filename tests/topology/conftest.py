"""Fixtures of the topology tests: YAML files written on the fly, amqpq's management client."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amqpq.settings import Settings
from amqpq.topology.loader import load_topology_text
from amqpq.topology.models import Topology
from amqpq.transport.management import ManagementClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "amqpq.yaml"


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str], Path]:
    """Factory: write dedented YAML to a file and return its path."""

    def write(text: str, name: str = "amqpq.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


def parse_yaml(text: str, environ: dict[str, str] | None = None) -> Topology:
    """A topology from dedented YAML, reported as ``t.yaml`` (no environment unless given)."""
    return load_topology_text(textwrap.dedent(text), "t.yaml", environ or {})


@pytest.fixture
def parse() -> Callable[..., Topology]:
    return parse_yaml


@pytest.fixture
def api(settings: Settings) -> Iterator[ManagementClient]:
    with ManagementClient.from_settings(settings) as client:
        yield client
