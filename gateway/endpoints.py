"""Endpoint URLs: which ones the gateway will deliver to (PROTOCOL section 6).

Registration and every connection apply the same rules (`gateway.delivery.addresses`): an
http(s) URL without credentials, whose host is a standard IP literal or a name, and whose every
address is public or inside `SWITCHBOARD_ALLOW_PRIVATE_ENDPOINTS`. Checking at registration
tells a brand at once; checking again at connect time is what makes it safe, since DNS answers
change.
"""

from __future__ import annotations

from gateway.config import DeliverySettings
from gateway.delivery.addresses import UrlRefused, parse_endpoint, refusal
from gateway.delivery.resolve import AddressRefused, Lookup, checked_addresses, system_lookup
from gateway.errors import EndpointForbidden


class EndpointGuard:
    """Checks an endpoint URL at registration."""

    def __init__(self, settings: DeliverySettings, lookup: Lookup | None = None) -> None:
        self._settings = settings
        self._lookup = lookup or system_lookup

    async def check_registration(self, url: str) -> None:
        """Refuse `url` with `EndpointForbidden` naming the URL and the refused address."""
        try:
            endpoint = parse_endpoint(url)
        except UrlRefused as exc:
            raise EndpointForbidden(str(exc), url=url) from exc
        allow = self._settings.allow_private
        if endpoint.literal is not None:
            reason = refusal(endpoint.literal, allow)
            if reason is not None:
                raise EndpointForbidden(
                    f"{url} points at {endpoint.literal}, a {reason} address; endpoints must"
                    " be reachable on the public internet",
                    url=url,
                    address=str(endpoint.literal),
                )
            return
        try:
            await checked_addresses(endpoint.host, endpoint.port, self._lookup, allow)
        except AddressRefused as exc:
            raise EndpointForbidden(
                f"{url}: {exc.host} resolves to {exc.address}, a {exc.reason} address;"
                " endpoints must resolve to public addresses only",
                url=url,
                address=str(exc.address),
            ) from exc
        except OSError as exc:
            raise EndpointForbidden(
                f"{url}: the host {endpoint.host} does not resolve ({exc}); publish its DNS"
                " record before registering the endpoint",
                url=url,
            ) from exc
