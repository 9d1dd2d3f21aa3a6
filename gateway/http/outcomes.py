"""The outcome ledger of a brand, as a verifiable export (PROTOCOL section 8).

The answer carries everything `switchboard outcomes verify` needs: the entries with their
hashes and signatures, and the gateway's JWKS (which a careful verifier fetches from
`/.well-known/switchboard` instead of trusting the export).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from aiohttp import web

from gateway.errors import NotFound, RequestInvalid
from gateway.http.context import json_response, principal, services
from gateway.http.routes import Param, Route, Success
from gateway.http.shapes import OUTCOMES, TIME
from identity.address import parse_domain
from routing.outcomes import EntryFacts, OutcomeKind, totals
from routing.policy import Action, Target, authorize


def _moment(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RequestInvalid(f"{name} must be an RFC 3339 time, got {raw!r}", member=name) from exc
    if moment.tzinfo is None:
        raise RequestInvalid(f"{name} needs a time zone (end it in Z)", member=name)
    return moment


async def get_outcomes(request: web.Request) -> web.Response:
    svc = services(request)
    domain = parse_domain(request.match_info["domain"])
    authorize(await principal(request), Action.READ_OUTCOMES, Target(brand=domain))
    if await svc.directory.brand(domain) is None:
        raise NotFound(f"no brand {domain}", domain=domain)
    since, until = _moment(request, "since"), _moment(request, "until")
    entries = await svc.desk.outcomes.entries(domain, since, until)
    counted = totals(
        EntryFacts(
            task=e["task"],
            kind=OutcomeKind(e["outcome"]),
            resolved_by=e["resolved_by"],
            escalated=e["escalated"],
        )
        for e in entries
    )
    key = svc.gateway_key
    return json_response(
        {
            "brand": domain,
            "since": request.query.get("since"),
            "until": request.query.get("until"),
            "entries": entries,
            "totals": asdict(counted),
            "gateway": svc.settings.domain,
            "jwks": {"keys": [{**key.public.jwk, "kid": key.kid, "alg": "EdDSA", "use": "sig"}]},
        }
    )


ROUTES = (
    Route(
        "GET",
        "/v1/brands/{domain}/outcomes",
        get_outcomes,
        "The brand's outcome ledger and totals",
        "token",
        answers=(Success(200, OUTCOMES),),
        tag="outcomes",
        params=(
            Param("since", TIME, "Entries at or after this time (RFC 3339, with a zone)"),
            Param("until", TIME, "Entries before this time (RFC 3339, with a zone)"),
        ),
        refusals=("address_invalid", "forbidden", "not_found", "schema_invalid"),
    ),
)
