"""What ``amqpq --version`` prints, without importing the CLI framework."""

from __future__ import annotations

import platform
from importlib.metadata import version

__all__ = ["version_line"]


def version_line() -> str:
    """The installed package's version and the Python it runs on."""
    return f"amqpq {version('amqpq')} (Python {platform.python_version()})"
