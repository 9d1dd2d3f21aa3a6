"""`POST /v1/messages`: an envelope in, 202 with the task's state out (200 for a repeat)."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from gateway.http.context import json_response, services
from gateway.http.routes import Route, Success
from gateway.http.shapes import ACCEPTED, DUPLICATE, ENVELOPE
from identity.envelope import MAX_REQUEST_BYTES
from identity.errors import PayloadTooLarge

log = structlog.get_logger(__name__)


async def post_message(request: web.Request) -> web.Response:
    svc = services(request)
    started = time.perf_counter()
    try:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            # aiohttp stops reading past client_max_size; refuse it as rule 1 does, so the
            # refusal is counted and logged like every other.
            raise PayloadTooLarge(
                f"the request body is over {MAX_REQUEST_BYTES} bytes; at most"
                f" {MAX_REQUEST_BYTES} are allowed",
                limit=MAX_REQUEST_BYTES,
            ) from exc
        accepted = await svc.acceptance.accept_bytes(body)
    except Exception as exc:
        code = getattr(exc, "code", None)
        if isinstance(code, str):
            svc.metrics.refused(code)
            # The audit line: the only trace a refused envelope leaves.
            log.info("envelope.refused", code=code, detail=getattr(exc, "detail", ""))
        raise
    finally:
        svc.metrics.observe_latency(time.perf_counter() - started)
    return json_response(accepted.answer, status=200 if accepted.duplicate else 202)


ROUTES = (
    Route(
        "POST",
        "/v1/messages",
        post_message,
        "Submit a signed envelope",
        "envelope",
        body=ENVELOPE,
        answers=(
            Success(202, ACCEPTED, "Accepted: a new envelope"),
            Success(200, DUPLICATE, "An identical resend: the first answer, duplicate true"),
        ),
        tag="messages",
        refusals=(
            "address_invalid",
            "unknown_sender",
            "unknown_key",
            "key_revoked",
            "signature_invalid",
            "clock_skew",
            "expired",
            "replay_conflict",
            "unknown_recipient",
            "forbidden",
            "rate_limited",
            "task_not_found",
            "invalid_transition",
            "task_closed",
            "under_human_control",
            "unavailable",
        ),
    ),
)
