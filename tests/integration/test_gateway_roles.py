"""The role matrix through HTTP: every role against every endpoint served now.

`MATRIX` is the expected status per (endpoint, role), written out by hand from PROTOCOL
section 4 and 5. A second test checks the table against `routing.policy.authorize`, so the
HTTP layer and the pure rules cannot drift apart silently; the few cells where HTTP answers
differently on purpose are listed in `HTTP_CHOICES` with the reason.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from identity.keys import PrivateKey
from routing.errors import Forbidden, Unauthorized
from routing.policy import Action, Principal, Role, Target, authorize
from tests.conftest import ADMIN_TOKEN
from tests.integration.openapi_contract import Contract
from tests.integration.wire import PROBLEM, request

ROLES = ("anonymous", "admin", "brand_admin", "other_brand_admin", "personal", "brand_agent")

# Endpoint -> status per role, in ROLES order.
MATRIX: dict[str, tuple[int, ...]] = {
    "GET /.well-known/switchboard": (200, 200, 200, 200, 200, 200),
    "POST /v1/brands": (401, 201, 403, 403, 403, 403),
    "POST /v1/agents (brand)": (401, 201, 201, 403, 403, 403),
    "GET /v1/agents/{brand agent}": (200, 200, 200, 200, 200, 200),
    "PATCH /v1/agents/{brand agent}": (401, 200, 200, 403, 403, 200),
    "PATCH /v1/agents/{personal}": (401, 200, 403, 403, 200, 403),
    "POST /v1/agents/{brand agent}/keys": (401, 201, 201, 403, 403, 201),
    "DELETE /v1/agents/{brand agent}/keys/{kid}": (401, 200, 200, 403, 403, 200),
    "POST /v1/agents/{personal}/keys": (401, 201, 403, 403, 201, 403),
    "GET /v1/directory": (200, 200, 200, 200, 200, 200),
    "GET /v1/inbox": (401, 403, 403, 403, 200, 200),
    "GET /v1/inbox/stream": (401, 403, 403, 403, 200, 200),
    "GET /v1/tasks/{id}": (401, 200, 200, 404, 200, 200),
    "GET /v1/tasks/{unknown id}": (401, 404, 404, 404, 404, 404),
    "GET /v1/tasks": (401, 200, 200, 200, 200, 200),
    "GET /v1/brands/{domain}/policy": (401, 200, 200, 403, 403, 403),
    "PUT /v1/brands/{domain}/policy": (401, 200, 200, 403, 403, 403),
    "GET /healthz": (200, 200, 200, 200, 200, 200),
    "GET /readyz": (200, 200, 200, 200, 200, 200),
    "GET /metrics": (200, 200, 200, 200, 200, 200),
    "GET /openapi.json": (200, 200, 200, 200, 200, 200),
}

# The action and target each endpoint is authorised as (None: no authorisation step).
ACTIONS: dict[str, tuple[Action, str]] = {
    "GET /.well-known/switchboard": (Action.READ_WELL_KNOWN, "none"),
    "POST /v1/brands": (Action.CREATE_BRAND, "none"),
    "POST /v1/agents (brand)": (Action.REGISTER_BRAND_AGENT, "brand"),
    "GET /v1/agents/{brand agent}": (Action.READ_AGENT_CARD, "brand agent"),
    "PATCH /v1/agents/{brand agent}": (Action.UPDATE_AGENT, "brand agent"),
    "PATCH /v1/agents/{personal}": (Action.UPDATE_AGENT, "personal"),
    "POST /v1/agents/{brand agent}/keys": (Action.MANAGE_AGENT_KEYS, "brand agent"),
    "DELETE /v1/agents/{brand agent}/keys/{kid}": (Action.MANAGE_AGENT_KEYS, "brand agent"),
    "POST /v1/agents/{personal}/keys": (Action.MANAGE_AGENT_KEYS, "personal"),
    "GET /v1/directory": (Action.SEARCH_DIRECTORY, "none"),
    "GET /v1/inbox": (Action.READ_INBOX, "self"),
    "GET /v1/inbox/stream": (Action.READ_INBOX, "self"),
    "GET /v1/tasks/{id}": (Action.READ_TASK, "task"),
    "GET /v1/tasks": (Action.LIST_TASKS, "self"),
    "GET /v1/brands/{domain}/policy": (Action.READ_POLICY, "brand"),
    "PUT /v1/brands/{domain}/policy": (Action.SET_POLICY, "brand"),
    "GET /healthz": (Action.READ_HEALTH, "none"),
    "GET /readyz": (Action.READ_HEALTH, "none"),
    "GET /metrics": (Action.READ_HEALTH, "none"),
    "GET /openapi.json": (Action.READ_HEALTH, "none"),
}

# Cells where HTTP answers other than `authorize` would, on purpose.
HTTP_CHOICES: dict[tuple[str, str], str] = {
    # A task you may not read is reported missing, so task ids cannot be probed.
    ("GET /v1/tasks/{id}", "other_brand_admin"): "403 shown as 404 task_not_found",
    # The admin may do everything, but it is not an agent and has no inbox to read.
    ("GET /v1/inbox", "admin"): "no inbox: 403",
    ("GET /v1/inbox/stream", "admin"): "no inbox: 403",
}

BRAND = "acme.example"
PERSONAL = "alice@people.example"
BRAND_AGENT = "support@acme.example"


@dataclass
class World:
    gateway: Any
    tokens: dict[str, str | None]
    task: str
    counter: itertools.count  # type: ignore[type-arg]
    contract: Contract  # the served /openapi.json, which every answer must match


async def _world(gateway: Any) -> World:
    acme, agents = await gateway.brand(BRAND, [("support", "Speaker support", ["lights"])])
    other, _ = await gateway.brand("other.example")
    alice = await gateway.person("alice")
    support = agents["support"]
    task = (await alice.send(BRAND, "My speaker blinks."))["task"]
    tokens = {
        "anonymous": None,
        "admin": ADMIN_TOKEN,
        "brand_admin": acme.token,
        "other_brand_admin": other.token,
        "personal": alice.token(),
        "brand_agent": support.token(),
    }
    document = await request(gateway.session, "GET", gateway.url + "/openapi.json")
    return World(gateway, tokens, task, itertools.count(), Contract(document.body))


async def _call(world: World, endpoint: str, role: str) -> tuple[int, str]:
    """Make the endpoint's request as `role`; returns (status, content type)."""
    gateway = world.gateway
    token = world.tokens[role]
    n = next(world.counter)
    method, _, _ = endpoint.partition(" ")
    body: Any = None
    if endpoint == "POST /v1/brands":
        path, body = "/v1/brands", {"domain": f"new{n}.example", "display_name": "New"}
    elif endpoint == "POST /v1/agents (brand)":
        path = "/v1/agents"
        body = {
            "address": f"agent{n}@{BRAND}",
            "kind": "brand",
            "keys": [PrivateKey.generate().public.jwk],
        }
    elif endpoint.startswith(("GET /v1/agents/", "PATCH /v1/agents/")):
        address = PERSONAL if "{personal}" in endpoint else BRAND_AGENT
        path = f"/v1/agents/{address}"
        if method == "PATCH":
            body = {"description": f"changed {n}"}
    elif endpoint.startswith("POST /v1/agents/"):
        address = PERSONAL if "{personal}" in endpoint else BRAND_AGENT
        path, body = f"/v1/agents/{address}/keys", {"jwk": PrivateKey.generate().public.jwk}
    elif endpoint.startswith("DELETE /v1/agents/"):
        spare = PrivateKey.generate()
        added = await request(
            gateway.session,
            "POST",
            f"{gateway.url}/v1/agents/{BRAND_AGENT}/keys",
            token=ADMIN_TOKEN,
            body={"jwk": spare.public.jwk},
        )
        assert added.status == 201
        path = f"/v1/agents/{BRAND_AGENT}/keys/{spare.kid}"
    elif endpoint == "GET /v1/tasks/{id}":
        path = f"/v1/tasks/{world.task}"
    elif endpoint == "GET /v1/tasks/{unknown id}":
        path = "/v1/tasks/tsk_unknown"
    elif "{domain}" in endpoint:
        path = f"/v1/brands/{BRAND}/policy"
        if method == "PUT":
            body = {"contact": {"mode": "open"}}
    else:
        path = endpoint.partition(" ")[2]
    url = gateway.url + path
    if endpoint == "GET /v1/inbox/stream":
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with gateway.session.get(url, headers=headers) as response:
            world.contract.check_status(method, path, response.status, response.content_type)
            return response.status, response.content_type
    answer = await request(gateway.session, method, url, token=token, body=body)
    world.contract.check(method, path, answer)
    return answer.status, answer.content_type


@pytest.mark.parametrize("endpoint", list(MATRIX))
async def test_role_matrix(gateway, endpoint):
    """Every role gets the status the matrix gives for this endpoint; refusals are problems;
    every answer, status and body, is as /openapi.json documents it."""
    world = await _world(gateway)
    got = {}
    for role in ROLES:
        status, content_type = await _call(world, endpoint, role)
        got[role] = status
        if status >= 400:
            assert content_type == PROBLEM, (endpoint, role, content_type)
    assert got == dict(zip(ROLES, MATRIX[endpoint], strict=True))


def _principal(role: str) -> Principal:
    return {
        "anonymous": Principal(Role.ANONYMOUS),
        "admin": Principal(Role.ADMIN),
        "brand_admin": Principal(Role.BRAND_ADMIN, brand=BRAND),
        "other_brand_admin": Principal(Role.BRAND_ADMIN, brand="other.example"),
        "personal": Principal(Role.PERSONAL_AGENT, address=PERSONAL),
        "brand_agent": Principal(Role.BRAND_AGENT, address=BRAND_AGENT, brand=BRAND),
    }[role]


def _target(kind: str, principal: Principal) -> Target:
    if kind == "brand":
        return Target(brand=BRAND)
    if kind == "brand agent":
        return Target(agent=BRAND_AGENT, agent_brand=BRAND, brand=BRAND)
    if kind == "personal":
        return Target(agent=PERSONAL)
    if kind == "self":
        return Target(agent=principal.address, brand=principal.brand, agent_brand=principal.brand)
    if kind == "task":
        return Target(brand=BRAND, task_parties=frozenset({PERSONAL, BRAND_AGENT}))
    return Target()


@pytest.mark.parametrize(("endpoint", "role"), list(itertools.product(ACTIONS, ROLES)))
def test_matrix_agrees_with_routing_policy(endpoint, role):
    """The HTTP matrix says what `routing.policy.authorize` says, except the listed choices."""
    action, kind = ACTIONS[endpoint]
    principal = _principal(role)
    try:
        authorize(principal, action, _target(kind, principal))
        verdict = "allowed"
    except Unauthorized:
        verdict = "401"
    except Forbidden:
        verdict = "403"
    status = MATRIX[endpoint][ROLES.index(role)]
    http = "allowed" if status < 300 else str(status)
    if (endpoint, role) in HTTP_CHOICES:
        assert http != verdict, f"{endpoint} {role}: listed as a choice but agrees"
        return
    assert http == verdict, (endpoint, role, http, verdict)
