"""Operations and discovery over HTTP: /openapi.json against the router, /metrics after
traffic, /healthz, /readyz, unknown paths and methods as problems, and the directory."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from gateway.store.database import create_engine
from gateway.store.tables import inbox
from identity.envelope import MAX_REQUEST_BYTES
from tests.integration.wire import assert_problem, request

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def _served(app: Any) -> set[tuple[str, str]]:
    """(METHOD, path) for every route the aiohttp router serves."""
    served = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD":
            served.add((route.method, path))
    return served


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


async def test_openapi_is_3_1_and_matches_the_router(gateway):
    """The document has OpenAPI 3.1's shape (checked by hand: openapi-spec-validator is not
    installed), every $ref resolves, and its operations are exactly the served routes."""
    answer = await request(gateway.session, "GET", gateway.url + "/openapi.json")
    assert answer.status == 200 and answer.content_type == "application/json"
    doc = answer.body
    assert doc["openapi"].startswith("3.1.")
    assert isinstance(doc["info"]["title"], str) and isinstance(doc["info"]["version"], str)
    operation_ids = []
    documented = set()
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        assert set(item) <= METHODS, item.keys()
        for method, operation in item.items():
            documented.add((method.upper(), path))
            operation_ids.append(operation["operationId"])
            assert any(status.startswith("2") for status in operation["responses"])
            for status, response in operation["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status), (method, path, status)
                if status >= "400" and path != "/readyz":
                    assert set(response["content"]) == {"application/problem+json"}
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{([^}]+)}", path)), (method, path)
            for parameter in operation.get("parameters", []):
                assert parameter["in"] in {"path", "query", "header", "cookie"}
                assert "schema" in parameter
            if "requestBody" in operation:  # POSTs that read nothing (claim) declare none
                assert "application/json" in operation["requestBody"]["content"], (method, path)
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    schemes = doc["components"]["securitySchemes"]
    for item in doc["paths"].values():
        for operation in item.values():
            for requirement in operation["security"]:
                assert set(requirement) <= set(schemes)
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rpartition("/")[2] in doc["components"]["schemas"], ref
    assert documented == _served(gateway.app)


async def test_health_and_readiness(gateway):
    """/healthz answers ok; /readyz reports the database and the bus reachable."""
    health = await request(gateway.session, "GET", gateway.url + "/healthz")
    assert health.status == 200 and health.body == {"status": "ok"}
    ready = await request(gateway.session, "GET", gateway.url + "/readyz")
    assert ready.status == 200
    assert ready.body == {"status": "ready", "checks": {"database": True, "bus": True}}


async def test_unknown_path_is_a_404_problem(gateway):
    """A path the gateway does not serve is a 404 not_found problem."""
    answer = await request(gateway.session, "GET", gateway.url + "/v1/nothing-here")
    assert_problem(answer, 404, "not_found", "openapi")


async def test_wrong_method_is_a_405_problem_with_allow(gateway):
    """A method a path does not take is a 405 problem naming the method, with Allow."""
    answer = await request(gateway.session, "DELETE", gateway.url + "/v1/messages")
    assert_problem(answer, 405, "method_not_allowed", "DELETE", "POST")
    assert "POST" in answer.headers["Allow"]
    put = await request(gateway.session, "PUT", gateway.url + "/v1/inbox", body={})
    assert_problem(put, 405, "method_not_allowed", "PUT", "GET")


def _metric(text: str, name: str, **labels: str) -> float:
    rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    wanted = f"{name}{{{rendered}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series == wanted:
            return float(value)
    return 0.0


async def test_metrics_count_accepted_and_refused_envelopes(gateway):
    """After traffic, /metrics counts accepted envelopes by act and refused ones by code,
    the inbox gauge equals the stored items, and the latency histogram counts every POST."""
    _, agents = await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    support = agents["support"]
    alice = await gateway.person("alice")
    task = (await alice.send("acme.example", "one"))["task"]
    await alice.send(support.address, "two", task=task)
    await support.send(alice.address, "Which colour?", act="ask", task=task)
    url = gateway.url + "/v1/messages"
    await request(gateway.session, "POST", url, data=b"{nope")
    await request(gateway.session, "POST", url, body=alice.envelope("nobody.example", "x"))
    await request(gateway.session, "POST", url, body=alice.envelope("nobody.example", "y"))
    await request(gateway.session, "POST", url, data=b" " * (MAX_REQUEST_BYTES * 2))
    answer = await request(gateway.session, "GET", gateway.url + "/metrics")
    assert answer.status == 200 and answer.content_type == "text/plain"
    text = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
    accepted = "switchboard_envelopes_accepted_total"
    refused = "switchboard_envelopes_refused_total"
    assert _metric(text, accepted, act="say") == 2
    assert _metric(text, accepted, act="ask") == 1
    assert _metric(text, refused, code="invalid_json") == 1
    assert _metric(text, refused, code="unknown_recipient") == 2
    assert _metric(text, refused, code="payload_too_large") == 1
    assert _metric(text, "switchboard_inbox_items") == 3
    assert _metric(text, "switchboard_message_seconds_count") == 7
    assert _metric(text, "switchboard_message_seconds_bucket", le="+Inf") == 7
    assert "# TYPE switchboard_message_seconds histogram" in text


async def test_the_inbox_gauge_is_the_stored_items_and_reads_no_item(gateway):
    """After envelopes to several agents, some read, `switchboard_inbox_items` equals the rows
    of the inbox table and what the agents' inboxes hold; the scrape reads no inbox row (it
    costs one row per agent, not one per item), and its HELP says what it counts."""
    _, agents = await gateway.brand(
        "acme.example", [("support", "Speakers", ["lights"]), ("orders", "Orders", ["refunds"])]
    )
    alice, bob = await gateway.person("alice"), await gateway.person("bob")
    for person in (alice, bob):
        task = (await person.send("acme.example", "my light flashes orange"))["task"]
        await agents["support"].send(person.address, "Fast or slow?", act="ask", task=task)
        await person.send(agents["support"].address, "Slow.", task=task)
    await alice.send(agents["orders"].address, "where is my order?")
    await alice.inbox()  # read: still stored
    held = 0
    for client in (alice, bob, *agents.values()):
        held += len((await client.inbox(limit=100))["items"])
    engine = create_engine(gateway.settings.sqlalchemy_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(func.count()).select_from(inbox))).scalar_one()
    finally:
        await engine.dispose()
    assert rows == held == 7
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        answer = await request(gateway.session, "GET", gateway.url + "/metrics")
    finally:
        event.remove(Engine, "before_cursor_execute", note)
    assert answer.status == 200
    assert _metric(answer.body, "switchboard_inbox_items") == rows
    assert statements, "the scrape ran no statement: nothing was checked"
    assert not [s for s in statements if re.search(r"\bFROM inbox\b", s, re.IGNORECASE)]
    assert (
        "# HELP switchboard_inbox_items Inbox items stored, all agents together, read or not"
        in answer.body
    )


# Directory -----------------------------------------------------------------------------------


async def _directory_world(gateway: Any) -> None:
    await gateway.brand(
        "acme.example",
        [
            ("support", "Technical support for speakers", ["troubleshooting", "status lights"]),
            ("orders", "Orders, delivery and refunds", ["order status", "refunds", "delivery"]),
        ],
    )
    await gateway.brand(
        "globex.example", [("billing", "Invoices, payments and billing questions", ["invoices"])]
    )


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("I want a refund for my order", "orders@acme.example"),
        ("my speaker light is flashing", "support@acme.example"),
        ("question about an invoice payment", "billing@globex.example"),
    ],
)
async def test_directory_ranks_the_right_agent_first(gateway, query, first):
    """A plain-English query puts the best-fitting brand agent first, with a score and why."""
    await _directory_world(gateway)
    answer = await request(gateway.session, "GET", gateway.url + "/v1/directory", token=None)
    assert answer.status == 200 and len(answer.body["items"]) == 3
    ranked = await request(
        gateway.session, "GET", f"{gateway.url}/v1/directory?q={query.replace(' ', '+')}"
    )
    items = ranked.body["items"]
    assert ranked.body["query"] == query
    assert items[0]["address"] == first
    assert items[0]["score"] >= items[-1]["score"]
    assert isinstance(items[0]["why"], str)
    assert "keys" not in items[0] and "endpoint" not in items[0]


async def test_directory_filters_by_domain(gateway):
    """?domain= keeps only that brand's agents; a bad domain is 400 address_invalid."""
    await _directory_world(gateway)
    answer = await request(
        gateway.session, "GET", gateway.url + "/v1/directory?domain=acme.example&q=refund"
    )
    assert {item["address"] for item in answer.body["items"]} == {
        "support@acme.example",
        "orders@acme.example",
    }
    assert answer.body["items"][0]["address"] == "orders@acme.example"
    none = await request(gateway.session, "GET", gateway.url + "/v1/directory?domain=x.example")
    assert none.body["items"] == []
    bad = await request(gateway.session, "GET", gateway.url + "/v1/directory?domain=no_dot")
    assert_problem(bad, 400, "address_invalid")
