"""The one place where errors become HTTP: RFC 9457 problem details, by protocol code.

Each package raises its own error family with a `code` and a `detail`; `STATUS` maps every
code to its status, and `problem_response` writes
`{"type": "urn:switchboard:error:<code>", "title", "status", "detail", "code"}`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError
from identity.errors import IdentityError
from routing.errors import RateLimited, RoutingError

PROBLEM_TYPE = "application/problem+json"

STATUS: dict[str, tuple[int, str]] = {
    "payload_too_large": (413, "Payload too large"),
    "invalid_json": (400, "Invalid JSON"),
    "schema_invalid": (400, "Invalid shape"),
    "address_invalid": (400, "Invalid address"),
    "key_invalid": (400, "Invalid key"),
    "policy_invalid": (400, "Invalid policy"),
    "clock_skew": (400, "Clock skew"),
    "expired": (400, "Envelope expired"),
    "endpoint_forbidden": (400, "Endpoint forbidden"),
    "unknown_sender": (401, "Unknown sender"),
    "unknown_key": (401, "Unknown key"),
    "key_revoked": (401, "Key revoked"),
    "signature_invalid": (401, "Invalid signature"),
    "unauthorized": (401, "Unauthorized"),
    "forbidden": (403, "Forbidden"),
    "unknown_recipient": (404, "Unknown recipient"),
    "task_not_found": (404, "Task not found"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "replay_conflict": (409, "Replay conflict"),
    "invalid_transition": (409, "Invalid transition"),
    "task_closed": (409, "Task closed"),
    "under_human_control": (409, "Under human control"),
    "address_taken": (409, "Address taken"),
    "brand_exists": (409, "Brand exists"),
    "escalation_conflict": (409, "Escalation conflict"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "rate_limited": (429, "Rate limited"),
    "internal": (500, "Internal error"),
    "unavailable": (503, "Unavailable"),
}

Known = IdentityError | RoutingError | GatewayError


def problem_response(
    code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    status, title = STATUS.get(code, (500, "Internal error"))
    body = {
        "type": f"urn:switchboard:error:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def from_error(error: Known) -> web.Response:
    """The problem for one of our own errors, with its structured fields as extensions."""
    headers: dict[str, str] = {}
    extra = {
        key: value
        for key, value in error.fields.items()
        if isinstance(value, str | int | float | bool) and key not in ("detail", "code")
    }
    if isinstance(error, RateLimited):
        retry_after = max(1, int(error.retry_after + 0.999))
        headers["Retry-After"] = str(retry_after)
        extra["retry_after"] = retry_after
    return problem_response(error.code, error.detail, headers=headers, **extra)


def from_http_exception(exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no such route, wrong method, body too large) as problems."""
    if exc.status == 404:
        return problem_response("not_found", "there is no such resource; see /openapi.json")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return problem_response(
            "method_not_allowed",
            f"this resource does not take {exc.method}; use {allowed}",
            headers={"Allow": allowed},
        )
    if exc.status == 413:
        return problem_response("payload_too_large", "the request body is larger than 256 KiB")
    return problem_response("internal", exc.reason or "request failed")
