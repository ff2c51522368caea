"""Topologies several test modules share."""

from __future__ import annotations

from typing import Any

# One classic queue that holds one message and refuses (nacks) the next ones.
BOUNDED: dict[str, Any] = {
    "exchanges": [{"name": "tasks", "type": "direct"}],
    "queues": [
        {
            "name": "bounded",
            "type": "classic",
            "max_length": 1,
            "overflow": "reject-publish",
            "bindings": [{"exchange": "tasks", "routing_key": "bounded"}],
        }
    ],
    "routes": {"*": {"exchange": "tasks", "routing_key": "bounded"}},
}
