"""The producer tests' topology: a direct exchange, a headers exchange and an orphaned route."""

from __future__ import annotations

from typing import Any

TOPOLOGY: dict[str, Any] = {
    "exchanges": [
        {"name": "tasks", "type": "direct"},
        {"name": "reports", "type": "headers"},
        {"name": "orphan", "type": "direct"},
    ],
    "queues": [
        {"name": "default", "bindings": [{"exchange": "tasks", "routing_key": "default"}]},
        {"name": "high", "bindings": [{"exchange": "tasks", "routing_key": "high"}]},
        {
            "name": "pdf",
            "bindings": [{"exchange": "reports", "arguments": {"x-match": "all", "format": "pdf"}}],
        },
        {"name": "orphaned", "bindings": [{"exchange": "orphan", "routing_key": "k"}]},
    ],
    "routes": {
        "tasks.send_email": {"exchange": "tasks", "routing_key": "high"},
        "tasks.orphan": {"exchange": "orphan", "routing_key": "k"},
        "tasks.nowhere": {"exchange": "tasks", "routing_key": "no-such-key"},
        "reports.*": {"exchange": "reports", "headers": {"format": "pdf"}},
        "*": {"exchange": "tasks", "routing_key": "default"},
    },
}
