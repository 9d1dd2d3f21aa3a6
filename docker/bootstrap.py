"""Register a brand and its agent on a running gateway, once: the distributed demo's set-up.

    python docker/bootstrap.py --gateway URL --brand acme.example --agent support@acme.example \
        --endpoint http://127.0.0.1:9000/ --key var/agent_key.jwk [--audience gateway.localhost]

The admin token comes from SWITCHBOARD_ADMIN_TOKEN. The agent's private key is written to
`--key` (mode 0600) for `switchboard example-agent --key` to use. A second run finds the key
file and the agent already registered, and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from gateway.client import GatewayProblem, StaffClient
from identity.keys import PrivateKey


def agent_key(path: Path) -> tuple[PrivateKey, bool]:
    """The agent's key from its file, or a new one written there; and whether it existed."""
    if path.exists():
        return PrivateKey.load(path), True
    path.parent.mkdir(parents=True, exist_ok=True)
    key = PrivateKey.generate()
    key.save(path)
    return key, False


async def bootstrap(
    args: argparse.Namespace, admin_token: str, key: PrivateKey, had_key: bool
) -> str:
    async with aiohttp.ClientSession() as session:
        for _ in range(60):  # the gateway may still be starting
            try:
                async with session.get(args.gateway + "/readyz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(1)
        admin = StaffClient(args.gateway, admin_token, session=session)
        async with session.get(f"{args.gateway}/v1/agents/{args.agent}") as response:
            if response.status == 200 and had_key:
                return f"{args.agent} is registered already"
        try:
            brand = await admin.create_brand(args.brand, args.brand.split(".")[0].title())
        except GatewayProblem as exc:
            raise SystemExit(f"bootstrap: cannot create {args.brand}: {exc}") from exc
        staff = StaffClient(args.gateway, brand["token"], session=session)
        await staff.register_brand_agent(
            args.agent,
            key,
            display_name="Support",
            description="Reference brand agent: answers every message it is sent.",
            skills=["support"],
            endpoint=args.endpoint,
        )
        return f"{args.brand}: {args.agent} registered with endpoint {args.endpoint}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--brand", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--audience", default="gateway.localhost")
    args = parser.parse_args()
    token = os.environ.get("SWITCHBOARD_ADMIN_TOKEN")
    if not token:
        sys.exit("bootstrap: set SWITCHBOARD_ADMIN_TOKEN to the gateways' admin token")
    key, had_key = agent_key(Path(args.key))
    print("bootstrap: " + asyncio.run(bootstrap(args, token, key, had_key)), flush=True)


if __name__ == "__main__":
    main()
