"""Request middleware: a request id on every log line and response, and errors as problems."""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.errors import GatewayError
from gateway.http.problems import from_error, from_http_exception, problem_response
from identity.errors import IdentityError
from routing.errors import RoutingError

log = structlog.get_logger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id() -> str:
    """A version-4 UUID in hex, as `uuid.uuid4().hex` spells it, from Python's generator
    (seeded from the system's randomness, again in a forked child) rather than a system call
    and a `UUID` object per request: a request id ties log lines together and guards nothing.
    That generator can be predicted from its outputs: nothing secret may ever come from it
    (tokens, keys and nonces come from `secrets` and `os.urandom`)."""
    bits = random.getrandbits(128)
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)  # the RFC 4122 variant
    return f"{bits:032x}"


@web.middleware
async def request_context(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else new_request_id()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response: web.StreamResponse
    try:
        response = await handler(request)
    except (IdentityError, RoutingError, GatewayError) as exc:
        response = from_error(exc)
        if response.status >= 500:
            log.warning("request.unavailable", code=exc.code, detail=exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = from_http_exception(exc)
    except Exception:
        log.exception("request.failed", method=request.method, path=request.path)
        response = problem_response(
            "internal",
            f"the gateway failed on this request; quote request id {request_id} to its operator",
        )
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response
