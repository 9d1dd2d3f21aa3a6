"""`/.well-known/switchboard`: what a client needs to talk to this gateway."""

from __future__ import annotations

from aiohttp import web

from gateway.http.context import json_response, services
from gateway.http.routes import Route, Success
from gateway.http.shapes import WELL_KNOWN
from identity.envelope import MAX_PARTS, MAX_REQUEST_BYTES, MAX_TEXT_BYTES, PROTOCOL


async def well_known(request: web.Request) -> web.Response:
    svc = services(request)
    settings = svc.settings
    return json_response(
        {
            "protocol": PROTOCOL,
            "domain": settings.domain,
            "personal_domain": settings.personal_domain,
            "gateway": settings.gateway_address,
            "jwks": {
                "keys": [
                    {
                        **svc.gateway_key.public.jwk,
                        "kid": svc.gateway_key.kid,
                        "alg": "EdDSA",
                        "use": "sig",
                    }
                ]
            },
            "limits": {
                "max_request_bytes": MAX_REQUEST_BYTES,
                "max_text_bytes": MAX_TEXT_BYTES,
                "max_parts": MAX_PARTS,
                "clock_skew_seconds": 300,
                "replay_window_seconds": 48 * 3600,
                "rate_per_minute": settings.rate_per_minute,
                "inbox_wait_max_seconds": 30,
            },
        }
    )


ROUTES = (
    Route(
        "GET",
        "/.well-known/switchboard",
        well_known,
        "Protocol, domains, the gateway's JWKS and limits",
        "none",
        answers=(Success(200, WELL_KNOWN),),
        tag="discovery",
    ),
)
