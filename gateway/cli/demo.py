"""`switchboard demo`: a whole conversation through a real gateway, printed step by step."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="start a gateway on a temporary folder and play a conversation through it"
    )
    demo.set_defaults(run=_run)


def _run(_args: argparse.Namespace) -> int:
    from gateway.demo import main
    from gateway.logs import configure

    configure("console", "warning")
    return main()
