"""Where the ops tests' files are: this folder (the worker's tasks module) and its topology."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TOPOLOGY = HERE / "ops_topology.yaml"
