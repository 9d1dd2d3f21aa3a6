"""The directory: brand agents ranked for a plain-English query."""

from __future__ import annotations

from aiohttp import web

from gateway.http.context import json_response, services
from gateway.http.routes import Param, Route, Success
from gateway.http.shapes import DIRECTORY
from identity.address import parse_domain
from routing.language import Candidate


async def search(request: web.Request) -> web.Response:
    svc = services(request)
    query = request.query.get("q", "").strip()
    domain = request.query.get("domain")
    agents = await svc.directory.all_brand_agents(parse_domain(domain) if domain else None)
    cards = {agent.address: agent for agent in agents}
    if query:
        ranked = await svc.language.rank(
            query, [Candidate(a.address, a.description, a.skills, a.display_name) for a in agents]
        )
        order = [(choice.address, choice.score, choice.why) for choice in ranked if choice.address]
    else:
        order = [(agent.address, 0.0, "no query: registration order") for agent in agents]
    items = []
    for address, score, why in order:
        agent = cards.get(address)
        if agent is None:
            continue
        card = agent.card()
        card.pop("keys", None)
        card.pop("endpoint", None)
        items.append({**card, "score": round(score, 4), "why": why})
    return json_response({"query": query, "items": items})


ROUTES = (
    Route(
        "GET",
        "/v1/directory",
        search,
        "Brand agents ranked for a plain-English query",
        "none",
        answers=(Success(200, DIRECTORY),),
        tag="directory",
        params=(
            Param("q", {"type": "string"}, "What the caller needs, in plain English"),
            Param("domain", {"type": "string"}, "Only this brand's agents"),
        ),
        refusals=("address_invalid",),
    ),
)
