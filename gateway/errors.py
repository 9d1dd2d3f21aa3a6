"""The gateway's own error family. Like `identity.errors` and `routing.errors`, each member
carries a protocol `code` and a `detail` for a person; `gateway/http/problems.py` alone maps
codes to HTTP statuses.

    GatewayError
    ├── UnknownSender        the envelope's `from` is not a registered, active agent
    ├── ReplayConflict       the (from, id) pair was accepted before with other content
    ├── AddressTaken         registration of an address that exists
    ├── BrandExists          creation of a brand that exists
    ├── NotFound             a resource that does not exist (or is not yours to see)
    ├── EndpointForbidden    an endpoint URL that resolves to a refused address
    ├── RequestInvalid       a request body (not an envelope) of the wrong shape
    └── Unavailable          a dependency (database, bus) is down
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """Base of the gateway's errors."""

    code: ClassVar[str] = "internal"

    def __init__(self, detail: str, **fields: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields


class UnknownSender(GatewayError):
    code = "unknown_sender"


class ReplayConflict(GatewayError):
    code = "replay_conflict"


class AddressTaken(GatewayError):
    code = "address_taken"


class BrandExists(GatewayError):
    code = "brand_exists"


class NotFound(GatewayError):
    code = "not_found"


class EndpointForbidden(GatewayError):
    code = "endpoint_forbidden"


class RequestInvalid(GatewayError):
    code = "schema_invalid"


class Unavailable(GatewayError):
    code = "unavailable"


def one_line(exc: BaseException) -> str:
    """Why an operation of the system or a library failed, on one line: the system's message
    for an OSError, else the exception's first line (its type when it says nothing)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]
