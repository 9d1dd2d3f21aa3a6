"""Real HTTP endpoints for delivery tests: aiohttp servers on 127.0.0.1 that record what they
receive and answer as each test scripts them. Shared by tests/delivery and tests/integration."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import DeliverySettings
from identity.keys import PublicKey
from identity.webhook import verify_webhook

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def fast_delivery(**changes: Any) -> DeliverySettings:
    """Delivery settings for tests: loopback allowed, short timeouts and backoff."""
    values: dict[str, Any] = {
        "allow_private": LOOPBACK,
        "timeout_s": 2.0,
        "backoff_base_s": 0.02,
        "backoff_max_s": 0.1,
        "sweep_s": 0.05,
    }
    values.update(changes)
    return DeliverySettings(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    """One request as the endpoint saw it."""

    headers: dict[str, str]
    body: bytes
    at: float
    peer: str = ""  # the client's address and port: one per connection

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def signed_by(self, keys: Sequence[PublicKey], body: bytes | None = None) -> bool:
        """Whether the Standard Webhooks signature verifies with `keys` over the body
        received (or `body`, to check that another one would not), timestamp fresh."""
        return verify_webhook(
            keys,
            self.webhook_id,
            int(self.headers["webhook-timestamp"]),
            self.body if body is None else body,
            self.headers["webhook-signature"],
            now=datetime.now(UTC),
        )


async def published_keys(session: Any, gateway_url: str) -> list[PublicKey]:
    """The gateway's keys as a receiver learns them: the JWKS of its well-known document."""
    async with session.get(gateway_url + "/.well-known/switchboard") as response:
        return [PublicKey.from_jwk(jwk) for jwk in (await response.json())["jwks"]["keys"]]


Responder = Callable[["Endpoint", Received], Awaitable[web.StreamResponse]]


async def accept_all(_endpoint: Endpoint, _received: Received) -> web.StreamResponse:
    return web.Response(status=204)


@dataclass
class Endpoint:
    """An agent's webhook endpoint, for real: it records requests and answers via `respond`."""

    port: int = field(default_factory=free_port)
    respond: Responder = accept_all
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    server: TestServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Endpoint:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1", port=self.port)
        await self.server.start_server()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            received = Received(
                {k.lower(): v for k, v in request.headers.items()},
                await request.read(),
                time.monotonic(),
                str(request.transport.get_extra_info("peername") if request.transport else ""),
            )
            self.received.append(received)
            return await self.respond(self, received)
        finally:
            self.in_flight -= 1

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        """Wait until `count` requests have arrived; fail the test after `within` seconds."""
        deadline = time.monotonic() + within
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.received)} requests arrived, expected {count} within {within} s"
                )
            await asyncio.sleep(0.01)
        return self.received


async def wait_until(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = "condition"
) -> None:
    """Poll `check` until it holds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        await asyncio.sleep(0.02)
