"""Fixtures for the real-server scenarios.

The `refused` fixture POSTs an envelope (or raw bytes) to `/v1/messages` and proves the two
halves of every refusal: the answer is the RFC 9457 problem the protocol names, and nothing
changed (no task, no inbox item, no stored envelope under the refused (from, id) pair).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.wire import Answer, assert_problem, footprint, request

Refused = Callable[..., Awaitable[tuple[dict[str, Any], Answer]]]


@pytest.fixture
def refused(gateway: Any) -> Refused:
    """POST an envelope or bytes; check the problem and that the store did not change."""

    async def check(
        envelope: dict[str, Any] | bytes, status: int, code: str, *words: str
    ) -> tuple[dict[str, Any], Answer]:
        store = gateway.services.conversations
        pair = None
        if isinstance(envelope, dict):
            data = json.dumps(envelope).encode()
            if isinstance(envelope.get("from"), str) and isinstance(envelope.get("id"), str):
                pair = (envelope["from"].lower(), envelope["id"])
        else:
            data = envelope
        before = await footprint(gateway)
        stored_before = await store.by_replay_key(*pair) if pair else None
        answer = await request(gateway.session, "POST", gateway.url + "/v1/messages", data=data)
        problem = assert_problem(answer, status, code, *words)
        assert await footprint(gateway) == before, "a refused envelope changed the store"
        if pair:
            assert await store.by_replay_key(*pair) == stored_before
        return problem, answer

    return check
