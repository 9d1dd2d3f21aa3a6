"""Why one HTTP delivery attempt did not get an answer. None of these reaches an HTTP client
of the gateway: the worker records them on the attempt and decides whether to retry.

    GatewayError
    ├── EndpointForbidden    (gateway.errors) the endpoint resolves to a refused address
    └── DeliveryError        the endpoint gave no HTTP answer
        ├── EndpointTimeout      no complete answer within the delivery timeout
        └── EndpointUnreachable  DNS failure, connection refused or reset, TLS failure
"""

from __future__ import annotations

from gateway.errors import GatewayError


class DeliveryError(GatewayError):
    """The endpoint gave no HTTP answer; worth retrying."""

    code = "delivery_failed"


class EndpointTimeout(DeliveryError):
    code = "endpoint_timeout"


class EndpointUnreachable(DeliveryError):
    code = "endpoint_unreachable"
