"""The role matrix through HTTP: every role against every route the gateway serves.

The routes come from the real application's router (`served_routes`), not from a list kept
here: a route added to the gateway gets cells at once, and they fail until `TABLE` (or
`PUBLIC`) says who may call it. `test_every_served_route_has_an_expectation` says so too,
naming the route.

`TABLE` is PROTOCOL.md sections 4 and 5 written as route -> who is allowed, one row per
kind of thing the path names (a brand agent's card, a personal agent's). Each (route,
variant, role) is one test: a real request through the running app with that role's own
credential, answered with:

- allowed: a 2xx (each request is made so that it succeeds when allowed),
- 401 `unauthorized` (or an envelope's own 401 codes) without a credential that checks out,
- 403 `forbidden` for a known caller without the right,
- 404 where the gateway hides what exists (docs/choices.md: tasks you are not a party of;
  the escalations of another brand, gateway/http/escalations.py).

Cells where the gateway disagrees with the protocol are in `DISAGREEMENTS`: the table keeps
the protocol's answer; the cell checks the answer the gateway gives now and is reported as
an expected failure with the reason. Once the gateway changes, the cell fails: update both.

One gateway (SQLite in a temporary folder) serves the whole module; every cell makes what it
changes (a new brand, a new key, a new escalation) for itself, so cells do not depend on
each other's order.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.app import build_app
from gateway.client import AgentClient, StaffClient
from gateway.config import DeliverySettings
from identity.keys import PrivateKey
from tests.conftest import ADMIN_TOKEN, Harness, make_settings, start_gateway
from tests.integration.openapi_contract import Contract
from tests.integration.wire import PROBLEM, request

# --- who calls ---------------------------------------------------------------------------

ANONYMOUS = "anonymous"  # no credential at all
NEWCOMER = "newcomer"  # a personal agent's key and address, never registered (new each cell)
ADMIN = "admin"  # the gateway admin's sbt_ token
BRAND_ADMIN = "brand_admin"  # acme.example's brand admin
OTHER_BRAND_ADMIN = "other_brand_admin"  # other.example's brand admin
OPERATOR = "operator"  # jane@acme.example, an operator of acme.example
OTHER_OPERATOR = "other_operator"  # eve@other.example
BRAND_AGENT = "brand_agent"  # support@acme.example
SIBLING_AGENT = "sibling_agent"  # sales@acme.example: same brand, another agent
PERSONAL = "personal"  # alice@people.example
OTHER_PERSONAL = "other_personal"  # bob@people.example

ROLES = (
    ANONYMOUS,
    NEWCOMER,
    ADMIN,
    BRAND_ADMIN,
    OTHER_BRAND_ADMIN,
    OPERATOR,
    OTHER_OPERATOR,
    BRAND_AGENT,
    SIBLING_AGENT,
    PERSONAL,
    OTHER_PERSONAL,
)
EVERYONE = frozenset(ROLES)
NO_IDENTITY = frozenset({ANONYMOUS, NEWCOMER})
KNOWN = EVERYONE - NO_IDENTITY
AGENTS = frozenset({BRAND_AGENT, SIBLING_AGENT, PERSONAL, OTHER_PERSONAL})
STAFF = frozenset({BRAND_ADMIN, OTHER_BRAND_ADMIN, OPERATOR, OTHER_OPERATOR})

BRAND = "acme.example"
OTHER_BRAND = "other.example"
SUPPORT = f"support@{BRAND}"
ALICE = "alice@people.example"

OK = "ok"


@dataclass(frozen=True)
class Row:
    """Who may call one route on one kind of target.

    Attributes:
        ok: The roles that are allowed (a 2xx).
        hidden: Roles answered 404, as if the target did not exist.
        unauthorized: Roles answered 401; the rest are 403 `forbidden`.
        other: Roles with another answer that is not about authorisation (the reason is
            a comment beside the row).
    """

    ok: frozenset[str]
    hidden: frozenset[str] = frozenset()
    unauthorized: frozenset[str] = NO_IDENTITY
    other: Mapping[str, int] = field(default_factory=dict)

    def expect(self, role: str) -> str | int:
        if role in self.ok:
            return OK
        if role in self.other:
            return self.other[role]
        if role in self.hidden:
            return 404
        if role in self.unauthorized:
            return 401
        return 403


def allowed(*roles: str, **more: Any) -> Row:
    return Row(ok=frozenset(roles), **more)


# Routes anyone may call (PROTOCOL section 5, "who: anyone"); they name nothing of anyone's,
# and every role must get a 2xx from them.
PUBLIC: dict[str, str] = {
    "GET /.well-known/switchboard": "discovery: protocol, domains, the gateway's keys",
    "GET /v1/directory": "the directory of brand agents is public",
    "GET /healthz": "liveness, for load balancers",
    "GET /readyz": "readiness, for load balancers",
    "GET /metrics": "Prometheus metrics (the protocol lists them for anyone)",
    "GET /openapi.json": "the API description",
}

# Route -> variant (what the path names) -> who is allowed, in the order of PROTOCOL section 5.
TABLE: dict[str, dict[str, Row]] = {
    "POST /v1/brands": {"": allowed(ADMIN)},
    "POST /v1/agents": {
        "brand agent of acme": allowed(ADMIN, BRAND_ADMIN),
        # "the key's owner (personal agents)": the proof of possession is an agent JWT signed
        # by the key being registered; no other credential stands in for it.
        "personal, the newcomer's own key": allowed(NEWCOMER, unauthorized=EVERYONE),
    },
    "GET /v1/agents/{address}": {
        "brand agent": allowed(*EVERYONE),
        "personal agent": allowed(*EVERYONE),
    },
    # "owner": the agent itself, and for a brand agent its brand's admins (section 4).
    "PATCH /v1/agents/{address}": {
        "brand agent": allowed(ADMIN, BRAND_ADMIN, BRAND_AGENT),
        "personal agent": allowed(ADMIN, PERSONAL),
    },
    "POST /v1/agents/{address}/keys": {
        "brand agent": allowed(ADMIN, BRAND_ADMIN, BRAND_AGENT),
        "personal agent": allowed(ADMIN, PERSONAL),
    },
    "DELETE /v1/agents/{address}/keys/{kid}": {
        "brand agent": allowed(ADMIN, BRAND_ADMIN, BRAND_AGENT),
        "personal agent": allowed(ADMIN, PERSONAL),
    },
    # "any agent": the envelope authenticates itself (section 4); a bearer token sent along
    # makes nobody's envelope authentic.
    "POST /v1/messages": {
        "own envelope": allowed(*AGENTS, unauthorized=EVERYONE - AGENTS),
        "envelope from another agent": allowed(unauthorized=EVERYONE),
    },
    # "agent": its own inbox. The admin and staff are not agents: nothing is addressed to them.
    "GET /v1/inbox": {"": allowed(*AGENTS)},
    "GET /v1/inbox/stream": {"": allowed(*AGENTS)},
    # "parties, brand staff"; anyone else is told the task does not exist (docs/choices.md).
    "GET /v1/tasks/{id}": {
        "alice's task with support": allowed(
            ADMIN,
            BRAND_ADMIN,
            OPERATOR,
            BRAND_AGENT,
            PERSONAL,
            hidden=frozenset({OTHER_BRAND_ADMIN, OTHER_OPERATOR, SIBLING_AGENT, OTHER_PERSONAL}),
        ),
        "unknown id": allowed(hidden=KNOWN),
    },
    # Each known caller lists the tasks it is a party of, or its brand's.
    "GET /v1/tasks": {"": allowed(*KNOWN)},
    "POST /v1/brands/{domain}/operators": {"": allowed(ADMIN, BRAND_ADMIN)},
    "GET /v1/brands/{domain}/operators": {"": allowed(ADMIN, BRAND_ADMIN)},
    "POST /v1/brands/{domain}/channels": {"": allowed(ADMIN, BRAND_ADMIN)},
    "GET /v1/brands/{domain}/channels": {"": allowed(ADMIN, BRAND_ADMIN)},
    "DELETE /v1/brands/{domain}/channels/{id}": {"": allowed(ADMIN, BRAND_ADMIN)},
    "PUT /v1/brands/{domain}/policy": {"": allowed(ADMIN, BRAND_ADMIN)},
    # Not in section 5; docs/choices.md: only brand admins read the policy.
    "GET /v1/brands/{domain}/policy": {"": allowed(ADMIN, BRAND_ADMIN)},
    # "operator"; brand admins read their brand's escalations too (section 4). Each brand's
    # staff sees its own queue.
    "GET /v1/escalations": {"": allowed(ADMIN, *STAFF)},
    "GET /v1/escalations/stream": {
        # The live queue is per brand and the admin has none: 400, not a refusal.
        "": allowed(*STAFF, other={ADMIN: 400}),
    },
    "GET /v1/escalations/{id}": {
        "acme's escalation": allowed(
            ADMIN, BRAND_ADMIN, OPERATOR, hidden=frozenset({OTHER_BRAND_ADMIN, OTHER_OPERATOR})
        ),
    },
    # "operator" works escalations; brand admins read them but do not work them (section 4).
    **{
        f"POST /v1/escalations/{{id}}/{work}": {
            "acme's escalation": allowed(
                ADMIN, OPERATOR, hidden=frozenset({OTHER_BRAND_ADMIN, OTHER_OPERATOR})
            ),
        }
        for work in ("claim", "release", "reply", "resolve", "handback")
    },
    "GET /v1/brands/{domain}/outcomes": {"": allowed(ADMIN, BRAND_ADMIN)},
}

# Cells where the gateway answers otherwise than the protocol:
# (route, variant, role) -> (the gateway's answer now, why).
DISAGREEMENTS: dict[tuple[str, str, str], tuple[int, str]] = {}  # none today


def served_routes(app: web.Application) -> list[str]:
    """'METHOD /canonical/path' for every route the application's router serves."""
    return sorted(
        {
            f"{route.method} {route.resource.canonical}"
            for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
    )


def _app() -> web.Application:
    # Built, never started: the router is complete before start-up, and nothing is written.
    return build_app(make_settings(Path("never-started")))


SERVED = served_routes(_app())


def _rows(route: str) -> dict[str, Row | None]:
    if route in PUBLIC:
        return {"": allowed(*EVERYONE)}
    return dict(TABLE.get(route) or {"no expectation": None})


def _cells() -> list[Any]:
    cells = []
    for route in SERVED:
        for variant, row in _rows(route).items():
            for role in ROLES:
                name = f"{route} [{variant}] {role}" if variant else f"{route} {role}"
                cells.append(pytest.param(route, variant, role, row, id=name))
    return cells


def test_every_served_route_has_an_expectation():
    """Each route the app serves is public or in TABLE, nothing is listed that is not
    served, and each listed disagreement is a cell whose protocol answer differs."""
    served = set(served_routes(_app()))
    assert not PUBLIC.keys() & TABLE.keys(), "a route is both public and in TABLE"
    missing = served - PUBLIC.keys() - TABLE.keys()
    assert not missing, f"served routes nobody decided who may call: {sorted(missing)}"
    stale = (PUBLIC.keys() | TABLE.keys()) - served
    assert not stale, f"expectations for routes the app does not serve: {sorted(stale)}"
    for (route, variant, role), (now, _why) in DISAGREEMENTS.items():
        assert TABLE[route][variant].expect(role) != now, (route, variant, role)


# --- the gateway and its callers ---------------------------------------------------------


@dataclass
class Caller:
    """One role's credential: a bearer token (made fresh for agents) and, for key holders,
    the agent client whose key signs envelopes."""

    role: str
    agent: AgentClient | None = None
    token: str | None = None

    def bearer(self) -> str | None:
        return self.agent.token() if self.agent is not None else self.token


@dataclass
class World:
    gw: Harness
    admin: StaffClient
    jane: StaffClient
    tokens: dict[str, str]
    agents: dict[str, AgentClient]
    task: str
    contract: Contract  # the served /openapi.json, which every answer must match
    counter: Any = field(default_factory=itertools.count)

    def n(self) -> int:
        return int(next(self.counter))

    def stranger(self) -> AgentClient:
        """A personal agent with a key that nobody has registered."""
        return self.gw.agent(f"new{self.n()}@{self.gw.settings.personal_domain}")

    def caller(self, role: str) -> Caller:
        if role == NEWCOMER:
            return Caller(role, agent=self.stranger())
        if role in self.agents:
            return Caller(role, agent=self.agents[role])
        return Caller(role, token=self.tokens.get(role))

    async def escalation(self, *, claimed: bool) -> str:
        """A new escalation of acme's, open or claimed by its operator jane."""
        alice, support = self.agents[PERSONAL], self.agents[BRAND_AGENT]
        task = (await alice.send(SUPPORT, "My speaker blinks."))["task"]
        await support.send(ALICE, "A person will take over.", act="escalate", task=task)
        (escalation,) = (await self.admin.get(f"/v1/tasks/{task}"))["escalations"]
        if claimed:
            await self.jane.post(f"/v1/escalations/{escalation['id']}/claim")
        return str(escalation["id"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    settings = make_settings(
        tmp_path_factory.mktemp("roles") / "var",
        timer_interval_s=0.0,  # no timers: nothing changes between cells on its own
        rate_per_minute=100_000,  # cells open many tasks from the same two people
        # Channels made here point at loopback; they subscribe to an event no cell causes.
        delivery=DeliverySettings(allow_private=(ipaddress.ip_network("127.0.0.0/8"),)),
    )
    async with start_gateway(settings) as gw:
        acme, acme_agents = await gw.brand(
            BRAND,
            [("support", "Speaker support", ["speakers"]), ("sales", "Sales", ["pricing"])],
        )
        other, _ = await gw.brand(OTHER_BRAND)
        jane = await acme.post(f"/v1/brands/{BRAND}/operators", {"handle": "jane"})
        eve = await other.post(f"/v1/brands/{OTHER_BRAND}/operators", {"handle": "eve"})
        alice, bob = await gw.person("alice"), await gw.person("bob")
        assert alice.address == ALICE and acme_agents["support"].address == SUPPORT
        task = (await alice.send(SUPPORT, "My speaker blinks."))["task"]
        document = await request(gw.session, "GET", gw.url + "/openapi.json")
        yield World(
            contract=Contract(document.body),
            gw=gw,
            admin=gw.admin(),
            jane=gw.staff(jane["token"]),
            tokens={
                ADMIN: ADMIN_TOKEN,
                BRAND_ADMIN: acme.token,
                OTHER_BRAND_ADMIN: other.token,
                OPERATOR: jane["token"],
                OTHER_OPERATOR: eve["token"],
            },
            agents={
                BRAND_AGENT: acme_agents["support"],
                SIBLING_AGENT: acme_agents["sales"],
                PERSONAL: alice,
                OTHER_PERSONAL: bob,
            },
            task=task,
        )


# --- one request per (route, variant), made with the caller's credential ------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    bearer: bool = True  # send the caller's bearer credential
    stream: bool = False  # Server-Sent Events: read the status, then hang up


MakeCall = Callable[[World, Caller], Awaitable[Call]]


def _get(path: str, stream: bool = False) -> MakeCall:
    async def make(_world: World, _caller: Caller) -> Call:
        return Call("GET", path, stream=stream)

    return make


def _agent_address(variant: str) -> str:
    return SUPPORT if variant == "brand agent" else ALICE


def _card(variant: str) -> MakeCall:
    return _get(f"/v1/agents/{_agent_address(variant)}")


def _patch(variant: str) -> MakeCall:
    async def make(world: World, _caller: Caller) -> Call:
        path = f"/v1/agents/{_agent_address(variant)}"
        return Call("PATCH", path, {"description": f"changed {world.n()}"})

    return make


def _add_key(variant: str) -> MakeCall:
    async def make(_world: World, _caller: Caller) -> Call:
        path = f"/v1/agents/{_agent_address(variant)}/keys"
        return Call("POST", path, {"jwk": PrivateKey.generate().public.jwk})

    return make


def _revoke_key(variant: str) -> MakeCall:
    async def make(world: World, _caller: Caller) -> Call:
        address, spare = _agent_address(variant), PrivateKey.generate()
        await world.admin.post(f"/v1/agents/{address}/keys", {"jwk": spare.public.jwk})
        return Call("DELETE", f"/v1/agents/{address}/keys/{spare.kid}")

    return make


async def _create_brand(world: World, _caller: Caller) -> Call:
    return Call("POST", "/v1/brands", {"domain": f"new{world.n()}.example", "display_name": "N"})


async def _register_brand_agent(world: World, _caller: Caller) -> Call:
    key = PrivateKey.generate()
    body = {"address": f"agent{world.n()}@{BRAND}", "kind": "brand", "keys": [key.public.jwk]}
    return Call("POST", "/v1/agents", body)


async def _register_personal(world: World, caller: Caller) -> Call:
    # The newcomer registers itself; everyone else presents its own credential for the same
    # kind of registration (a key it does not hold).
    newcomer = caller.agent if caller.role == NEWCOMER else world.stranger()
    assert newcomer is not None
    body = {"address": newcomer.address, "kind": "personal", "keys": [newcomer.key.public.jwk]}
    return Call("POST", "/v1/agents", body)


async def _own_envelope(world: World, caller: Caller) -> Call:
    if caller.role in AGENTS:
        agent = world.agents[caller.role]
        if caller.role in (BRAND_AGENT, SIBLING_AGENT):
            # A brand agent answers in a task a person opened with it.
            alice = world.agents[PERSONAL]
            task = (await alice.send(agent.address, "My speaker blinks."))["task"]
            envelope = agent.envelope(ALICE, "Let us have a look.", task=task)
        else:
            envelope = agent.envelope(SUPPORT, "My speaker blinks.")
        return Call("POST", "/v1/messages", envelope, bearer=False)
    # No registered key: sign with one the gateway does not know; a token goes along.
    signer = caller.agent or world.stranger()
    return Call("POST", "/v1/messages", signer.envelope(SUPPORT, "My speaker blinks."))


async def _forged_envelope(world: World, caller: Caller) -> Call:
    victim = world.agents[OTHER_PERSONAL if caller.role == PERSONAL else PERSONAL]
    key = caller.agent.key if caller.agent is not None else PrivateKey.generate()
    forged = world.gw.agent(victim.address, key).envelope(SUPPORT, "My speaker blinks.")
    return Call("POST", "/v1/messages", forged, bearer=caller.role not in AGENTS)


async def _task(world: World, _caller: Caller) -> Call:
    return Call("GET", f"/v1/tasks/{world.task}")


def _brand_path(method: str, tail: str, body: Any = None) -> MakeCall:
    async def make(world: World, _caller: Caller) -> Call:
        sent = body(world) if callable(body) else body
        return Call(method, f"/v1/brands/{BRAND}/{tail}", sent)

    return make


def _channel(_world: World) -> dict[str, Any]:
    return {"kind": "slack", "url": "http://127.0.0.1:9/hook", "events": ["escalation.unclaimed"]}


async def _delete_channel(world: World, _caller: Caller) -> Call:
    made = await world.admin.post(f"/v1/brands/{BRAND}/channels", _channel(world))
    return Call("DELETE", f"/v1/brands/{BRAND}/channels/{made['id']}")


async def _escalation(world: World, _caller: Caller) -> Call:
    return Call("GET", f"/v1/escalations/{await world.escalation(claimed=False)}")


def _work(work: str, body: Any) -> MakeCall:
    async def make(world: World, caller: Caller) -> Call:
        # Claims start from an open escalation, the rest from one jane (the operator) holds,
        # or the admin when the admin works it (a holder's claim is what the others meet).
        if work == "claim":
            escalation = await world.escalation(claimed=False)
        elif caller.role == ADMIN:
            escalation = await world.escalation(claimed=False)
            await world.admin.post(f"/v1/escalations/{escalation}/claim")
        else:
            escalation = await world.escalation(claimed=True)
        return Call("POST", f"/v1/escalations/{escalation}/{work}", body)

    return make


REQUESTS: dict[tuple[str, str], MakeCall] = {
    **{(route, ""): _get(route.partition(" ")[2]) for route in PUBLIC},
    ("POST /v1/brands", ""): _create_brand,
    ("POST /v1/agents", "brand agent of acme"): _register_brand_agent,
    ("POST /v1/agents", "personal, the newcomer's own key"): _register_personal,
    **{
        (route, variant): make(variant)
        for route, make in (
            ("GET /v1/agents/{address}", _card),
            ("PATCH /v1/agents/{address}", _patch),
            ("POST /v1/agents/{address}/keys", _add_key),
            ("DELETE /v1/agents/{address}/keys/{kid}", _revoke_key),
        )
        for variant in ("brand agent", "personal agent")
    },
    ("POST /v1/messages", "own envelope"): _own_envelope,
    ("POST /v1/messages", "envelope from another agent"): _forged_envelope,
    ("GET /v1/inbox", ""): _get("/v1/inbox"),
    ("GET /v1/inbox/stream", ""): _get("/v1/inbox/stream?heartbeat=0.05", stream=True),
    ("GET /v1/tasks/{id}", "alice's task with support"): _task,
    ("GET /v1/tasks/{id}", "unknown id"): _get("/v1/tasks/tsk_unknown"),
    ("GET /v1/tasks", ""): _get("/v1/tasks"),
    ("POST /v1/brands/{domain}/operators", ""): _brand_path(
        "POST", "operators", lambda world: {"handle": f"op{world.n()}"}
    ),
    ("GET /v1/brands/{domain}/operators", ""): _brand_path("GET", "operators"),
    ("POST /v1/brands/{domain}/channels", ""): _brand_path("POST", "channels", _channel),
    ("GET /v1/brands/{domain}/channels", ""): _brand_path("GET", "channels"),
    ("DELETE /v1/brands/{domain}/channels/{id}", ""): _delete_channel,
    ("PUT /v1/brands/{domain}/policy", ""): _brand_path(
        "PUT", "policy", {"contact": {"mode": "open"}}
    ),
    ("GET /v1/brands/{domain}/policy", ""): _brand_path("GET", "policy"),
    ("GET /v1/escalations", ""): _get("/v1/escalations"),
    ("GET /v1/escalations/stream", ""): _get("/v1/escalations/stream?heartbeat=0.05", True),
    ("GET /v1/escalations/{id}", "acme's escalation"): _escalation,
    **{
        (f"POST /v1/escalations/{{id}}/{work}", "acme's escalation"): _work(work, body)
        for work, body in (
            ("claim", {}),
            ("release", {}),
            ("reply", {"text": "I am looking into it."}),
            ("resolve", {"text": "Fixed."}),
            ("handback", {"note": "Back to you."}),
        )
    },
    ("GET /v1/brands/{domain}/outcomes", ""): _brand_path("GET", "outcomes"),
}


async def _send(world: World, caller: Caller, call: Call) -> tuple[int, str, Any]:
    token = caller.bearer() if call.bearer else None
    url = world.gw.url + call.path
    if call.stream:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with world.gw.session.get(url, headers=headers) as response:
            world.contract.check_status(
                call.method, call.path.split("?")[0], response.status, response.content_type
            )
            body = None if response.status == 200 else await response.json(content_type=None)
            return response.status, response.content_type, body
    answer = await request(world.gw.session, call.method, url, token=token, body=call.body)
    world.contract.check(call.method, call.path.split("?")[0], answer)
    return answer.status, answer.content_type, answer.body


UNAUTHORIZED_CODES = {"unauthorized", "unknown_sender", "unknown_key", "signature_invalid"}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("route", "variant", "role", "row"), _cells())
async def test_role_matrix(world: World, route: str, variant: str, role: str, row: Row | None):
    """This role's request on this route gets the answer the table gives for it, and the
    answer (status, media type, body) is as /openapi.json documents it."""
    assert row is not None, f"{route} is served but neither PUBLIC nor TABLE says who may call it"
    make = REQUESTS.get((route, variant))
    assert make is not None, f"no request is written for {route} [{variant}]"
    caller = world.caller(role)
    call = await make(world, caller)
    resolved = await world.gw.app.router.resolve(make_mocked_request(call.method, call.path))
    assert f"{call.method} {resolved.route.resource.canonical}" == route, (
        "request hit another route"
    )
    status, content_type, body = await _send(world, caller, call)
    protocol = row.expect(role)
    disagreement = DISAGREEMENTS.get((route, variant, role))
    want = disagreement[0] if disagreement else protocol
    if want == OK:
        assert 200 <= status < 300, (status, body)
    else:
        _assert_refusal(want, status, content_type, body)
    if disagreement:
        pytest.xfail(f"the protocol says {protocol}, the gateway {status}: {disagreement[1]}")


def _assert_refusal(want: int, status: int, content_type: str, body: Any) -> None:
    assert (status, content_type) == (want, PROBLEM), body
    if want == 401:
        assert body["code"] in UNAUTHORIZED_CODES, body
    if want == 403:
        assert body["code"] == "forbidden", body
    if want == 404:
        assert body["code"] in {"task_not_found", "not_found"}, body
