"""Fixtures of the delivery tests: endpoints on demand and a gateway allowed to reach them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import Harness, make_settings, start_gateway
from tests.delivery.webhook_endpoints import Endpoint, Responder, accept_all, fast_delivery


@pytest.fixture
async def endpoints() -> AsyncIterator[Callable[..., Awaitable[Endpoint]]]:
    """Start endpoints on demand; all stop when the test ends."""
    made: list[Endpoint] = []

    async def make(respond: Responder = accept_all, *, start: bool = True) -> Endpoint:
        endpoint = Endpoint(respond=respond)
        made.append(endpoint)
        return await endpoint.start() if start else endpoint

    yield make
    for endpoint in made:
        await endpoint.stop()


@pytest.fixture
async def delivering(tmp_path: Path) -> AsyncIterator[Harness]:
    """A gateway that may deliver to loopback endpoints, with test-sized backoff."""
    settings = make_settings(tmp_path / "var", delivery=fast_delivery())
    async with start_gateway(settings) as harness:
        yield harness
