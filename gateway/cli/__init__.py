"""The `switchboard` command line.

Each command group lives in its own module with a `register(subparsers)` function; this module
only assembles them and turns a `CliError` into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gateway.cli.output import CliError

_COMMAND_MODULES = (
    "gateway.cli.identity",
    "gateway.cli.serve",
    "gateway.cli.language",
    "gateway.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Switchboard: the gateway AI agents use to talk to each other in English.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CliError as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
