"""What every command shares: the one error type a command raises, and JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any


class CliError(Exception):
    """A problem the user can fix, printed as one line (never a traceback)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def emit_json(value: Any) -> None:
    """Print one JSON document on stdout, compact and UTF-8."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
