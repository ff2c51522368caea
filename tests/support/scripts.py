"""Users' own scripts, run as a user runs them: ``python script.py`` in a folder of choice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_script(
    script: Path, *, env: dict[str, str], cwd: Path, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``python SCRIPT`` from ``cwd`` to its end, output captured as text."""
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
