"""The inbox over real HTTP: poll with after/limit/next, long-poll, bad queries, and the
Server-Sent Events stream with Last-Event-ID resume and heartbeats."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import structlog

from tests.integration.wire import assert_problem, request


async def _world(gateway: Any) -> tuple[Any, Any]:
    _, agents = await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    return agents["support"], alice


async def _fill(alice: Any, support: Any, texts: list[str], task: str | None = None) -> str:
    """alice sends `texts` to support on one task; returns the task id."""
    for text in texts:
        answer = await alice.send(
            "acme.example" if task is None else support.address, text, task=task
        )
        task = answer["task"]
    assert task is not None
    return task


async def test_poll_pages_with_after_limit_and_next(gateway):
    """Pages of `limit` items in seq order; `next` is the following `after`; the shape is
    {items: [{seq, envelope, task: {id, state, control}}], next}."""
    support, alice = await _world(gateway)
    texts = [f"message {i}" for i in range(7)]
    task = await _fill(alice, support, texts)
    seen: list[str] = []
    after = 0
    pages = 0
    while True:
        page = await support.inbox(after=after, limit=3)
        pages += 1
        if not page["items"]:
            assert page["next"] == after
            break
        seqs = [item["seq"] for item in page["items"]]
        assert seqs == sorted(seqs) and seqs[0] > after
        assert page["next"] == seqs[-1]
        for item in page["items"]:
            assert item["task"] == {"id": task, "state": "submitted", "control": "agent"}
            assert item["envelope"]["from"] == alice.address
            assert "sig" in item["envelope"]
            seen.append(item["envelope"]["body"]["text"])
        after = page["next"]
    assert seen == texts
    assert pages == 4
    assert (await alice.inbox())["items"] == []  # alice's own envelopes are not in her inbox


async def test_inbox_item_carries_the_task_as_it_was(gateway):
    """Each item's task brief is the task's state when that envelope was accepted."""
    support, alice = await _world(gateway)
    task = await _fill(alice, support, ["hello"])
    await support.send(alice.address, "Which colour?", act="ask", task=task)
    await support.send(alice.address, "Fixed now.", act="resolve", task=task)
    states = [item["task"]["state"] for item in (await alice.inbox())["items"]]
    assert states == ["input-required", "completed"]


async def test_long_poll_returns_when_an_envelope_arrives(gateway):
    """A `wait` poll with nothing pending returns as soon as an envelope is accepted, with it."""
    support, alice = await _world(gateway)
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.create_task(support.inbox(after=0, wait=20))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await alice.send("acme.example", "are you there?")
    page = await asyncio.wait_for(waiting, 15)
    elapsed = loop.time() - started
    assert [item["envelope"]["body"]["text"] for item in page["items"]] == ["are you there?"]
    assert elapsed < 15  # well before the 20 s wait would have expired


async def test_long_poll_times_out_empty(gateway):
    """A short `wait` with nothing arriving returns an empty page with next = after."""
    support, _ = await _world(gateway)
    page = await support.inbox(after=5, wait=0.2)
    assert page == {"items": [], "next": 5}


@pytest.mark.parametrize(
    ("query", "member"),
    [
        ("after=abc", "after"),
        ("after=-1", "after"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("limit=x", "limit"),
        ("limit=1.5", "limit"),
        ("limit=1_0", "limit"),
        ("limit=+5", "limit"),
        ("after=4611686018427387905", "after"),
        ("wait=31", "wait"),
        ("wait=-1", "wait"),
        ("wait=nan", "wait"),
        ("wait=inf", "wait"),
    ],
)
async def test_bad_inbox_query_values_are_400(gateway, query, member):
    """Out-of-range or non-numeric after/limit/wait (and after/limit that are not whole
    numbers) are 400 schema_invalid naming the member."""
    support, _ = await _world(gateway)
    answer = await request(
        gateway.session, "GET", f"{gateway.url}/v1/inbox?{query}", token=support.token()
    )
    assert_problem(answer, 400, "schema_invalid", member)


# Server-Sent Events --------------------------------------------------------------------------


class _Sse:
    """A minimal SSE reader over a real connection: events as (id, event, data) and comments."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, within: float = 10) -> dict[str, Any]:
        """The next event or comment block."""
        block: dict[str, Any] = {"data": []}
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), within)
            if not raw:
                raise EOFError
            line = raw.decode().rstrip("\r\n")
            if line == "":
                if len(block) > 1 or block["data"]:
                    return block
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                block["comment"] = value
            elif name == "data":
                block["data"].append(value)
            else:
                block[name] = value

    async def envelopes(self, count: int) -> list[dict[str, Any]]:
        """The next `count` envelope events, skipping comments and retry hints."""
        found = []
        while len(found) < count:
            block = await self.next()
            if block.get("event") == "envelope":
                item = json.loads("\n".join(block["data"]))
                assert int(block["id"]) == item["seq"]
                found.append(item)
        return found


async def _open(gateway: Any, agent: Any, **headers: str) -> aiohttp.ClientResponse:
    response = await gateway.session.get(
        gateway.url + "/v1/inbox/stream",
        params={"heartbeat": "0.1"},
        headers={"Authorization": f"Bearer {agent.token()}", **headers},
    )
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    return response


async def test_stream_resumes_with_last_event_id_nothing_lost_or_repeated(gateway):
    """Read 3 of 5 events, disconnect, send 4 more, reconnect with Last-Event-ID: exactly the
    6 missing items arrive, in order, each once."""
    support, alice = await _world(gateway)
    task = await _fill(alice, support, [f"first {i}" for i in range(5)])
    response = await _open(gateway, support)
    first = await _Sse(response).envelopes(3)
    response.close()  # disconnect mid-stream
    assert [i["envelope"]["body"]["text"] for i in first] == ["first 0", "first 1", "first 2"]
    await _fill(alice, support, [f"second {i}" for i in range(4)], task=task)

    response = await _open(gateway, support, **{"Last-Event-ID": str(first[-1]["seq"])})
    rest = await _Sse(response).envelopes(6)
    texts = [i["envelope"]["body"]["text"] for i in rest]
    assert texts == ["first 3", "first 4"] + [f"second {i}" for i in range(4)]
    seqs = [i["seq"] for i in first + rest]
    assert seqs == sorted(set(seqs))
    # Nothing more is pending: the next block is a heartbeat, not an envelope.
    block = await _Sse(response).next(within=5)
    assert block.get("comment") == "heartbeat"
    response.close()


async def test_stream_delivers_live_envelopes_and_heartbeats(gateway):
    """A connected stream gets heartbeats while idle and new envelopes as they are accepted."""
    support, alice = await _world(gateway)
    response = await _open(gateway, support)
    reader = _Sse(response)
    retry = await reader.next()
    assert retry.get("retry") == "1000"
    heartbeats = 0
    while heartbeats < 2:
        block = await reader.next(within=5)
        assert block.get("comment") == "heartbeat"
        heartbeats += 1
    await alice.send("acme.example", "live one")
    (item,) = await reader.envelopes(1)
    assert item["envelope"]["body"]["text"] == "live one"
    response.close()


@pytest.mark.parametrize(
    ("headers", "query", "member"),
    [
        ({"Last-Event-ID": "abc"}, "", "Last-Event-ID"),
        ({"Last-Event-ID": "99999999999999999999"}, "", "Last-Event-ID"),
        ({"Last-Event-ID": "-1"}, "", "Last-Event-ID"),
        ({}, "?after=99999999999999999999", "after"),
        ({}, "?after=1_0", "after"),
        ({}, "?heartbeat=0", "heartbeat"),
    ],
)
async def test_stream_with_a_bad_resume_point_is_400(gateway, headers, query, member):
    """A Last-Event-ID or after that is not a seq from 0 to 2**62, or a heartbeat out of
    range, is 400 schema_invalid naming it, before the stream starts (a seq past SQLite's
    integers broke the response after its 200)."""
    support, _ = await _world(gateway)
    answer = await request(
        gateway.session,
        "GET",
        gateway.url + "/v1/inbox/stream" + query,
        token=support.token(),
        headers=headers,
    )
    assert_problem(answer, 400, "schema_invalid", member)


async def test_stream_disconnect_is_not_an_error(gateway):
    """A client leaving the stream is normal: no `request.failed` error is logged for it."""
    support, alice = await _world(gateway)
    await _fill(alice, support, ["one"])
    with structlog.testing.capture_logs() as logs:
        response = await _open(gateway, support)
        await _Sse(response).envelopes(1)
        response.close()
        await alice.send("acme.example", "after the client left")
        await asyncio.sleep(0.5)  # heartbeats at 0.1 s: the server notices the disconnect
    failures = [entry for entry in logs if entry.get("log_level") in ("error", "critical")]
    assert failures == []
