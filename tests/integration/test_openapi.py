"""/openapi.json matches what is served: real requests to the real app, each answer's status,
media type and body checked against the document's schema for that operation and status, and
the documented parameter bounds against what the gateway accepts and refuses."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator, ValidationError

from identity.keys import PrivateKey
from tests.conftest import ADMIN_TOKEN
from tests.integration.openapi_contract import Contract
from tests.integration.wire import Answer, request

BRAND = "acme.example"


async def _contract(gateway: Any) -> Contract:
    answer = await request(gateway.session, "GET", gateway.url + "/openapi.json")
    contract = Contract(answer.body)
    contract.check("GET", "/openapi.json", answer)
    return contract


async def _first_event(gateway: Any, path: str, token: str) -> Any:
    """The `data` of the first event a stream sends, resuming with Last-Event-ID 0."""
    headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": "0"}
    async with gateway.session.get(
        gateway.url + path, headers=headers, timeout=aiohttp.ClientTimeout(total=20)
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                return json.loads(line[5:])
    raise AssertionError(f"{path} sent no event")


async def test_answers_match_the_document(gateway):
    """Through the real app: discovery, brands, agents, keys, directory, messages (202, the
    200 duplicate, refusals), inbox and its stream, tasks, operators, escalations, policy,
    outcomes and operations each answer as the document says, status and body."""
    contract = await _contract(gateway)
    url, session = gateway.url, gateway.session

    async def call(method: str, path: str, **kw: Any) -> Answer:
        answer = await request(session, method, url + path, **kw)
        contract.check(method, path, answer)
        return answer

    await call("GET", "/.well-known/switchboard")
    for path in ("/healthz", "/readyz", "/metrics"):
        await call("GET", path)

    brand = {"domain": BRAND, "display_name": "Acme"}
    created = await call("POST", "/v1/brands", token=ADMIN_TOKEN, body=brand)
    assert created.status == 201
    assert (await call("POST", "/v1/brands", token=ADMIN_TOKEN, body=brand)).status == 409
    acme = created.body["token"]

    support = gateway.agent(f"support@{BRAND}")
    card = {
        "address": support.address,
        "kind": "brand",
        "display_name": "Support",
        "description": "Speakers",
        "skills": ["status lights"],
        "keys": [support.key.public.jwk],
    }
    assert (await call("POST", "/v1/agents", token=acme, body=card)).status == 201
    assert (await call("POST", "/v1/agents", token=acme, body=card)).status == 409
    alice = await gateway.person("alice")

    await call("GET", f"/v1/agents/{support.address}")
    assert (await call("GET", f"/v1/agents/nobody@{BRAND}")).status == 404
    patch = {"description": "Speakers and their status lights"}
    await call("PATCH", f"/v1/agents/{support.address}", token=acme, body=patch)
    keys = f"/v1/agents/{support.address}/keys"
    jwk = {"jwk": PrivateKey.generate().public.jwk}
    added = await call("POST", keys, token=acme, body=jwk)
    assert added.status == 201
    again = await call("POST", keys, token=acme, body=jwk)
    assert again.status == 200
    kid = added.body["keys"][-1]["kid"]
    await call("DELETE", f"{keys}/{kid}", token=acme)

    await call("GET", "/v1/directory?q=status+lights")
    await call("GET", f"/v1/directory?domain={BRAND}")

    envelope = alice.envelope(BRAND, "My speaker's light is flashing orange.")
    accepted = await call("POST", "/v1/messages", body=envelope)
    assert accepted.status == 202 and accepted.body["duplicate"] is False
    duplicate = await call("POST", "/v1/messages", body=envelope)
    assert duplicate.status == 200 and duplicate.body["duplicate"] is True
    forged = alice.envelope(BRAND, "Another question.")
    forged["body"]["text"] = "Something else."
    assert (await call("POST", "/v1/messages", body=forged)).status == 401
    task = accepted.body["task"]
    await support.send(alice.address, "Which colour exactly?", act="ask", task=task)

    await call("GET", "/v1/inbox?after=0&limit=10&wait=0", token=support.token())
    assert (await call("GET", "/v1/inbox")).status == 401
    assert (await call("GET", "/v1/inbox?limit=0", token=support.token())).status == 400
    event = await _first_event(gateway, "/v1/inbox/stream", alice.token())
    contract.check_event("GET", "/v1/inbox/stream", event)

    await call("GET", f"/v1/tasks/{task}", token=alice.token())
    await call("GET", "/v1/tasks?state=input-required", token=alice.token())
    await call("GET", "/v1/tasks?control=agent", token=acme)
    assert (await call("GET", "/v1/tasks?state=asleep", token=acme)).status == 400
    assert (await call("GET", "/v1/tasks/tsk_nothing", token=acme)).status == 404

    operators = f"/v1/brands/{BRAND}/operators"
    made = await call("POST", operators, token=acme, body={"handle": "jane"})
    jane = made.body["token"]
    await call("GET", operators, token=acme)

    await support.send(alice.address, "A person will help.", act="escalate", task=task)
    listed = await call("GET", "/v1/escalations?state=open", token=jane)
    escalation = listed.body["items"][0]["id"]
    one = f"/v1/escalations/{escalation}"
    await call("GET", one, token=jane)
    await call("POST", one + "/claim", token=jane)
    refused = await call("POST", one + "/claim", token=acme)
    assert refused.status == 403
    detail = await call("GET", f"/v1/tasks/{task}", token=acme)
    assert detail.body["escalations"] and detail.body["history"]

    policy = await call("GET", f"/v1/brands/{BRAND}/policy", token=acme)
    unversioned = {k: v for k, v in policy.body.items() if k != "version"}
    await call("PUT", f"/v1/brands/{BRAND}/policy", token=acme, body=unversioned)
    await call("GET", f"/v1/brands/{BRAND}/channels", token=acme)
    outcomes = f"/v1/brands/{BRAND}/outcomes?since=2020-01-01T00:00:00Z"
    await call("GET", outcomes, token=acme)

    answered = {(method, path) for method, path, _ in contract.checked}
    for operation in (
        ("GET", "/.well-known/switchboard"),
        ("POST", "/v1/brands"),
        ("POST", "/v1/agents"),
        ("GET", "/v1/agents/{address}"),
        ("GET", "/v1/directory"),
        ("POST", "/v1/messages"),
        ("GET", "/v1/inbox"),
        ("GET", "/v1/inbox/stream"),
        ("GET", "/v1/tasks/{id}"),
        ("GET", "/v1/tasks"),
    ):
        assert operation in answered, operation
    assert {("POST", "/v1/messages", 202), ("POST", "/v1/messages", 200)} <= contract.checked


def _bounds(contract: Contract, method: str, path: str, name: str) -> tuple[list[Any], list[Any]]:
    """Values the document allows for a parameter (its bounds, its enum) and values it
    does not (just past the bounds, outside the enum)."""
    schema = contract.parameter(method, path, name)["schema"]
    if "enum" in schema:
        return list(schema["enum"]), ["none-of-these"]
    step = 1 if schema["type"] == "integer" else 0.01
    allowed = [schema["minimum"], schema.get("maximum", schema["minimum"] + step)]
    refused = [schema["minimum"] - step]
    if "maximum" in schema:
        refused.append(schema["maximum"] + step)
    return allowed, refused


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/inbox", "after"),
        ("/v1/inbox", "limit"),
        ("/v1/inbox", "wait"),
        ("/v1/tasks", "state"),
        ("/v1/tasks", "control"),
    ],
)
async def test_documented_parameter_bounds_are_enforced(gateway, path, name):
    """Each bound or enum value the document gives a query parameter is accepted, and a
    value just outside it is refused with the documented 400 problem."""
    contract = await _contract(gateway)
    alice = await gateway.person("alice")
    _, agents = await gateway.brand(BRAND, [("support", "Speakers", ["lights"])])
    support = agents["support"]
    # An item in support's inbox: a long poll up to the longest wait answers at once.
    await alice.send(BRAND, "My speaker's light is flashing orange.")
    allowed, refused = _bounds(contract, "GET", path, name)
    for value in allowed + refused:
        answer = await request(
            gateway.session, "GET", f"{gateway.url}{path}?{name}={value}", token=support.token()
        )
        contract.check("GET", path, answer)
        assert answer.status == (200 if value in allowed else 400), (name, value, answer.body)


async def test_a_document_that_differs_from_the_answer_fails_the_check(gateway):
    """The check can fail: the same real answer is refused by a copy of the document with
    one member renamed, and by one whose status for it is missing."""
    contract = await _contract(gateway)
    alice = await gateway.person("alice")
    await gateway.brand(BRAND, [("support", "Speakers", ["lights"])])
    envelope = alice.envelope(BRAND, "Hello")
    answer = await request(gateway.session, "POST", gateway.url + "/v1/messages", body=envelope)
    contract.check("POST", "/v1/messages", answer)

    renamed = json.loads(json.dumps(contract.document))
    accepted = renamed["components"]["schemas"]["MessageAccepted"]
    accepted["required"] = ["task_status" if m == "task_state" else m for m in accepted["required"]]
    accepted["properties"]["task_status"] = accepted["properties"].pop("task_state")
    with pytest.raises(ValidationError):
        Contract(renamed).check("POST", "/v1/messages", answer)

    missing = json.loads(json.dumps(contract.document))
    del missing["paths"]["/v1/messages"]["post"]["responses"]["202"]
    with pytest.raises(AssertionError):
        Contract(missing).check("POST", "/v1/messages", answer)


async def test_every_schema_in_the_document_is_valid_json_schema(gateway):
    """Every component and every response schema is a valid JSON Schema 2020-12 (OpenAPI
    3.1's dialect); openapi-spec-validator is not a dependency, so this is the check."""
    contract = await _contract(gateway)
    for schema in contract.document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for item in contract.document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                Draft202012Validator.check_schema(parameter["schema"])
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    Draft202012Validator.check_schema(media["schema"])
