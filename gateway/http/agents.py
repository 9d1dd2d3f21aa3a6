"""Agents: registration, the public card, changes, and key rotation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.errors import NotFound
from gateway.http.context import json_response, principal, read_model, services
from gateway.http.models import AgentPatch, AgentRegister, KeyAdd
from gateway.http.routes import Route, Success
from gateway.http.shapes import CARD
from gateway.registry import NewAgent
from gateway.store.records import AgentRecord
from identity.address import parse_address
from routing.policy import Action, Principal, Role, Target, authorize


def _bearer(request: web.Request) -> str | None:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


async def register_agent(request: web.Request) -> web.Response:
    svc = services(request)
    body = await read_model(request, AgentRegister)
    proof = _bearer(request)
    if body.kind == "personal":
        # The JWT proves possession of a key being registered; it is checked against those
        # keys, not against the (not yet existing) agent.
        who = Principal(Role.ANONYMOUS)
    else:
        who = await principal(request)
    agent = await svc.registry.register_agent(
        who,
        NewAgent(
            address=body.address,
            kind=body.kind,
            display_name=body.display_name,
            description=body.description,
            skills=tuple(body.skills),
            keys=tuple(body.keys),
            endpoint_url=body.endpoint.url if body.endpoint else None,
            endpoint_max_batch=body.endpoint.max_batch if body.endpoint else 1,
        ),
        proof if body.kind == "personal" else None,
    )
    return json_response(agent.card(), status=201)


async def _agent(request: web.Request) -> AgentRecord:
    address = str(parse_address(request.match_info["address"]))
    agent = await services(request).directory.agent(address)
    if agent is None:
        raise NotFound(f"no agent {address}", address=address)
    return agent


def _target(agent: AgentRecord) -> Target:
    return Target(agent=agent.address, agent_brand=agent.brand, brand=agent.brand)


async def get_agent(request: web.Request) -> web.Response:
    # Cards are public (READ_AGENT_CARD: anyone): the caller is not looked at, as on the other
    # public routes, so an agent about to register can look itself up with its JWT.
    return json_response((await _agent(request)).card())


async def patch_agent(request: web.Request) -> web.Response:
    agent = await _agent(request)
    authorize(await principal(request), Action.UPDATE_AGENT, _target(agent))
    body = await read_model(request, AgentPatch)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if "endpoint" in changes:
        endpoint = changes.pop("endpoint")
        changes["endpoint_url"] = endpoint["url"] if endpoint else None
        changes["endpoint_max_batch"] = endpoint.get("max_batch", 1) if endpoint else 1
    updated = await services(request).registry.update_agent(agent.address, changes)
    return json_response(updated.card())


async def add_key(request: web.Request) -> web.Response:
    agent = await _agent(request)
    authorize(await principal(request), Action.MANAGE_AGENT_KEYS, _target(agent))
    body = await read_model(request, KeyAdd)
    updated, added = await services(request).registry.add_key(agent.address, body.jwk)
    return json_response(updated.card(), status=201 if added else 200)


async def revoke_key(request: web.Request) -> web.Response:
    agent = await _agent(request)
    authorize(await principal(request), Action.MANAGE_AGENT_KEYS, _target(agent))
    updated = await services(request).registry.revoke_key(agent.address, request.match_info["kid"])
    return json_response(updated.card())


ROUTES = (
    Route(
        "POST",
        "/v1/agents",
        register_agent,
        "Register an agent with its keys",
        "agent-or-token",
        body=AgentRegister,
        answers=(Success(201, CARD, "Registered: the public card"),),
        tag="agents",
        refusals=(
            "address_invalid",
            "key_invalid",
            "endpoint_forbidden",
            "forbidden",
            "not_found",
            "address_taken",
        ),
    ),
    Route(
        "GET",
        "/v1/agents/{address}",
        get_agent,
        "An agent's public card",
        "none",
        answers=(Success(200, CARD),),
        tag="agents",
        # Public: whatever credential comes with the request is not looked at.
        refusals=("address_invalid", "not_found"),
    ),
    Route(
        "PATCH",
        "/v1/agents/{address}",
        patch_agent,
        "Change an agent's names, description, skills or endpoint",
        "agent-or-token",
        body=AgentPatch,
        answers=(Success(200, CARD, "Changed: the public card"),),
        tag="agents",
        refusals=("address_invalid", "endpoint_forbidden", "forbidden", "not_found"),
    ),
    Route(
        "POST",
        "/v1/agents/{address}/keys",
        add_key,
        "Add a key (rotation step one)",
        "agent-or-token",
        body=KeyAdd,
        answers=(
            Success(201, CARD, "Added: the public card"),
            Success(200, CARD, "The key was already there: the public card"),
        ),
        tag="agents",
        refusals=("address_invalid", "key_invalid", "forbidden", "not_found"),
    ),
    Route(
        "DELETE",
        "/v1/agents/{address}/keys/{kid}",
        revoke_key,
        "Revoke a key (rotation step two)",
        "agent-or-token",
        answers=(Success(200, CARD, "Revoked: the public card"),),
        tag="agents",
        refusals=("address_invalid", "forbidden", "not_found"),
    ),
)
