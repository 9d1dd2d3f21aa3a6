"""Wire helpers for the real-server scenarios: raw requests, problem checks, the store's
footprint (what an accepted envelope would change)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Answer:
    """A response read whole: status, headers, and the body parsed as JSON (or None)."""

    status: int
    headers: Any
    content_type: str
    body: Any


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One raw HTTP request; the JSON body is parsed whatever the status."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    async with session.request(method, url, data=data, headers=sent) as response:
        raw = await response.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Answer(response.status, response.headers, response.content_type, parsed)


def assert_problem(answer: Answer, status: int, code: str, *words: str) -> dict[str, Any]:
    """The answer is the RFC 9457 problem for `code` and its detail names each of `words`."""
    assert answer.status == status, (answer.status, answer.body)
    assert answer.content_type == PROBLEM, answer.content_type
    problem = answer.body
    assert isinstance(problem, dict), problem
    assert problem["type"] == f"urn:switchboard:error:{code}", problem
    assert problem["code"] == code
    assert problem["status"] == status
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and len(problem["detail"]) > 10, problem
    for word in words:
        assert word.lower() in problem["detail"].lower(), (word, problem["detail"])
    return problem


@dataclass(frozen=True)
class Footprint:
    """What an accepted envelope would change: inbox depth and every task's state."""

    inbox: int
    tasks: tuple[tuple[str, str, str, str], ...]


async def footprint(harness: Any) -> Footprint:
    conversations = harness.services.conversations
    tasks = await conversations.list_tasks(limit=10_000)
    return Footprint(
        await conversations.inbox_depth(),
        tuple(sorted((t.id, t.state, t.control, t.updated_at.isoformat()) for t in tasks)),
    )
