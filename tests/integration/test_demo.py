"""`switchboard demo` plays a whole conversation and exits 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_command_tells_a_whole_conversation():
    """The demo runs as a real command: routes by domain to the reference brand agent over a
    real webhook, whose synchronous replies reach the person's inbox, ends a task confirmed,
    then escalates a request for a person (ops channel notified, the agent quiet) to an
    operator who resolves it, and the ledger counts both."""
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
    assert "Each is the reference brand agent (gateway/examples/brand_agent.py)" in out
    hops = re.findall(
        r"Webhook dlv_\w+ -> http://127\.0\.0\.1:(\d+)/webhook: HTTP 200 in \d+ ms, (.*)\.", out
    )
    support_port = re.search(r"support@acme-audio\.example -> http://127\.0\.0\.1:(\d+)/", out)
    assert support_port is not None
    assert hops[:3] == [(support_port.group(1), "its reply came back in the same answer")] * 3
    assert "(ask): Is the light blinking fast or slow?" in out
    assert "(resolve): Glad that sorted it." in out
    assert "[task input-required, agent]" in out
    assert "completed, confirmed" in out
    assert "escalation.opened (human_requested" in out
    assert "Ops channel: escalation.opened, signed webhook evt_" in out
    assert hops[3][1] == "no reply in the answer" and "stays quiet" in out
    assert "resolved by human" in out
    assert "1 by a human" in out
    assert "Traceback" not in result.stderr
