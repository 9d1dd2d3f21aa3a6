"""The ceiling: the least an envelope endpoint must do, on the gateway's own HTTP stack.

`python -m bench.ceiling --port P --keys keys.json` serves `POST /v1/messages` with a bare
aiohttp handler that reads the body, parses it, canonicalises it (RFC 8785, inside
`identity.envelope.parse`), verifies the Ed25519 signature and the clock window
(`identity.envelope.verify`) against keys loaded at start, and answers 202. No storage, no
routing, no task: whatever the gateway spends beyond this is the price of its features.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from identity.envelope import MAX_REQUEST_BYTES, KeyState, check_size, parse, parse_json, verify
from identity.errors import IdentityError
from identity.keys import PublicKey

KEYS: web.AppKey[dict[str, dict[str, KeyState]]] = web.AppKey("keys", dict)


def load_keys(path: Path) -> dict[str, dict[str, KeyState]]:
    """`{address: [jwk, …]}` from the file, decoded once: sender → kid → key."""
    raw = json.loads(path.read_text())
    keys: dict[str, dict[str, KeyState]] = {}
    for address, jwks in raw.items():
        states = {}
        for jwk in jwks:
            public = PublicKey.from_jwk(jwk)
            states[public.kid] = KeyState(public)
        keys[address] = states
    return keys


async def post_message(request: web.Request) -> web.Response:
    """Parse, canonicalise, verify, answer 202 (or 4xx with the identity error's code)."""
    body = await request.read()
    try:
        check_size(body)
        envelope = parse(parse_json(body))
        keys = request.app[KEYS].get(str(envelope.sender))
        if keys is None:
            return web.json_response({"code": "unknown_sender"}, status=401)
        verify(envelope, keys, datetime.now(UTC))
    except IdentityError as exc:
        return web.json_response({"code": exc.code, "detail": exc.detail}, status=400)
    return web.json_response(
        {"id": envelope.id, "task": envelope.task, "duplicate": False}, status=202
    )


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build(keys: dict[str, dict[str, KeyState]]) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES + 1)
    app[KEYS] = keys
    app.router.add_post("/v1/messages", post_message)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", type=Path, required=True)
    args = parser.parse_args()
    web.run_app(
        build(load_keys(args.keys)),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
