"""`switchboard example-agent`: run the reference brand agent (gateway/examples/brand_agent.py).

The agent must already be registered by its brand admin with this service's URL as its
endpoint, and with the public half of the key in `--key`.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.output import CliError


def register(commands: Any) -> None:
    """Add the `example-agent` command to the top-level subparsers."""
    parser = commands.add_parser(
        "example-agent", help="run the reference brand agent (a webhook endpoint)"
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--gateway", required=True, help="the gateway's base URL")
    parser.add_argument("--key", required=True, help="the agent's private key file (JWK)")
    parser.add_argument("--address", required=True, help="the agent's address")
    parser.add_argument(
        "--mode",
        choices=("sync", "async"),
        default="sync",
        help="reply in the webhook's answer (sync) or by POST /v1/messages (async)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.examples.brand_agent import BrandAgent
    from identity.address import parse_address
    from identity.errors import IdentityError
    from identity.keys import PrivateKey

    try:
        key = PrivateKey.load(args.key)
        address = str(parse_address(args.address))
    except IdentityError as exc:
        raise CliError(exc.detail) from exc
    agent = BrandAgent(gateway_url=args.gateway, address=address, key=key, mode=args.mode)
    print(
        f"switchboard: example agent {address} on http://{args.host}:{args.port}/"
        f" ({args.mode} replies) for {args.gateway}",
        flush=True,
    )
    try:
        web.run_app(agent.app(), host=args.host, port=args.port, print=None, access_log=None)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
    return 0
