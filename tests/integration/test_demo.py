"""`switchboard demo` plays a whole conversation and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_command_tells_a_whole_conversation():
    """The demo runs as a real command, routes by domain, and ends with a confirmed task."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "The gateway routed it to support@acme-audio.example." in out
    assert "(ask): Is the orange light blinking" in out
    assert "[task input-required, agent]" in out
    assert "completed, confirmed" in out
    assert "Traceback" not in result.stderr
