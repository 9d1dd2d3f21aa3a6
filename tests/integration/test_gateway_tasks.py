"""Tasks over HTTP: the view with its history in order, lists filtered by state and control,
and visibility for parties and brand staff only."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.integration.wire import assert_problem, request


async def _world(gateway: Any) -> tuple[Any, Any, Any, Any]:
    acme, agents = await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    bob = await gateway.person("bob")
    return acme, agents["support"], alice, bob


async def test_task_view_has_the_protocol_shape_and_history_in_order(gateway):
    """GET /v1/tasks/{id} gives state, control, parties, times, the envelopes in order as
    sent (signatures included), escalations and outcome."""
    _, support, alice, _ = await _world(gateway)
    sent = [alice.envelope("acme.example", "My speaker blinks.")]
    task = (await alice.post_envelope(sent[0]))["task"]
    sent.append(support.envelope(alice.address, "Which colour?", act="ask", task=task))
    await support.post_envelope(sent[-1])
    sent.append(alice.envelope(support.address, "Orange.", task=task))
    await alice.post_envelope(sent[-1])
    sent.append(support.envelope(alice.address, "Reset it.", act="resolve", task=task))
    await support.post_envelope(sent[-1])
    view = await alice.task(task)
    assert set(view) >= {
        "id",
        "state",
        "control",
        "initiator",
        "responder",
        "created_at",
        "updated_at",
        "history",
        "escalations",
        "outcome",
    }
    assert view["id"] == task
    assert (view["state"], view["control"]) == ("completed", "agent")
    assert (view["initiator"], view["responder"]) == (alice.address, support.address)
    assert view["history"] == sent
    assert view["created_at"] <= view["updated_at"]
    assert view["escalations"] == []


async def test_task_is_visible_to_parties_and_brand_staff_only(gateway):
    """Parties, the brand's admin and the admin read a task; another agent or another brand's
    admin gets the same 404 task_not_found as for a task that does not exist."""
    acme, support, alice, bob = await _world(gateway)
    other, _ = await gateway.brand("other.example")
    task = (await alice.send("acme.example", "hello"))["task"]
    url = f"{gateway.url}/v1/tasks/{task}"
    for token in (alice.token(), support.token(), acme.token, ADMIN_TOKEN):
        assert (await request(gateway.session, "GET", url, token=token)).status == 200
    for token in (bob.token(), other.token):
        problem = assert_problem(
            await request(gateway.session, "GET", url, token=token), 404, "task_not_found"
        )
        missing = assert_problem(
            await request(gateway.session, "GET", gateway.url + "/v1/tasks/tsk_x", token=token),
            404,
            "task_not_found",
        )
        assert problem["title"] == missing["title"]


async def test_task_list_filters_by_state_and_control(gateway):
    """GET /v1/tasks lists the caller's tasks; ?state= and ?control= filter them."""
    acme, support, alice, bob = await _world(gateway)
    asked = (await alice.send("acme.example", "one"))["task"]
    await support.send(alice.address, "Which?", act="ask", task=asked)
    escalated = (await alice.send("acme.example", "two"))["task"]
    await support.send(alice.address, "A person will help.", act="escalate", task=escalated)
    fresh = (await alice.send("acme.example", "three"))["task"]
    bobs = (await bob.send("acme.example", "bob's"))["task"]

    async def ids(token: str, **query: str) -> set[str]:
        suffix = "&".join(f"{k}={v}" for k, v in query.items())
        answer = await request(
            gateway.session, "GET", f"{gateway.url}/v1/tasks?{suffix}", token=token
        )
        assert answer.status == 200, answer.body
        return {item["id"] for item in answer.body["items"]}

    assert await ids(alice.token()) == {asked, escalated, fresh}
    assert await ids(alice.token(), state="input-required") == {asked}
    assert await ids(alice.token(), state="submitted") == {escalated, fresh}
    assert await ids(alice.token(), control="human") == {escalated}
    assert await ids(alice.token(), state="submitted", control="agent") == {fresh}
    assert await ids(support.token()) == {asked, escalated, fresh, bobs}
    assert await ids(acme.token, control="human") == {escalated}
    assert await ids(bob.token()) == {bobs}


@pytest.mark.parametrize(("query", "member"), [("state=open", "state"), ("control=x", "control")])
async def test_task_list_bad_filters(gateway, query, member):
    """Unknown state or control values are 400 schema_invalid naming the filter; anonymous
    callers get 401 whatever the query."""
    _, _, alice, _ = await _world(gateway)
    url = f"{gateway.url}/v1/tasks?{query}"
    bad = await request(gateway.session, "GET", url, token=alice.token())
    assert_problem(bad, 400, "schema_invalid", member)
    anonymous = await request(gateway.session, "GET", url)
    assert_problem(anonymous, 401, "unauthorized")


async def test_task_list_pages_with_next_until_none(gateway):
    """?limit= pages the list, newest update first; `next` given as ?before= gives the
    following page, every task exactly once, and `next` is null on the last page."""
    _, support, alice, _ = await _world(gateway)
    opened = [(await alice.send("acme.example", f"question {n}"))["task"] for n in range(5)]
    await support.send(alice.address, "Which one?", act="ask", task=opened[0])  # now newest

    async def page(**query: Any) -> dict[str, Any]:
        answer = await request(
            gateway.session,
            "GET",
            f"{gateway.url}/v1/tasks?" + "&".join(f"{k}={v}" for k, v in query.items()),
            token=alice.token(),
        )
        assert answer.status == 200, answer.body
        return answer.body  # type: ignore[no-any-return]

    seen: list[str] = []
    body = await page(limit=2)
    while True:
        assert len(body["items"]) <= 2
        seen += [item["id"] for item in body["items"]]
        if body["next"] is None:
            break
        body = await page(limit=2, before=body["next"])
    assert seen == [opened[0], *reversed(opened[1:])]
    everything = await page()
    assert [item["id"] for item in everything["items"]] == seen
    assert everything["next"] is None
    exactly = await page(limit=5)  # a page that holds them all exactly: no `next`
    assert len(exactly["items"]) == 5 and exactly["next"] is None


@pytest.mark.parametrize(
    ("query", "member"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=many", "limit"),
        ("before=not-a-cursor!", "before"),
        ("before=MjAyNg", "before"),  # base64url of "2026": no id, no time
    ],
)
async def test_task_list_bad_paging(gateway, query, member):
    """A limit outside 1-200 or a `before` this gateway did not give is 400 naming it."""
    _, _, alice, _ = await _world(gateway)
    url = f"{gateway.url}/v1/tasks?{query}"
    assert_problem(
        await request(gateway.session, "GET", url, token=alice.token()),
        400,
        "schema_invalid",
        member,
    )
