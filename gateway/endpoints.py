"""Endpoint URLs: which ones the gateway will deliver to (PROTOCOL section 6)."""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.config import DeliverySettings
from gateway.errors import EndpointForbidden


class EndpointGuard:
    """Checks an endpoint URL at registration."""

    def __init__(self, settings: DeliverySettings) -> None:
        self._settings = settings

    async def check_registration(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise EndpointForbidden(f"{url!r} is not an http(s) URL with a host", url=url)
        if parts.username or parts.password:
            raise EndpointForbidden("endpoint URLs may not carry credentials", url=url)
