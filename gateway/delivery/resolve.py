"""One DNS lookup with every answer checked: used at registration and at connect time.

No aiohttp here: `gateway.endpoints` checks a URL at registration with the same function the
sender's connector calls, so both refuse exactly the same hosts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

from gateway.delivery.addresses import IPAddress, Network, refusal

Lookup = Callable[[str, int], Awaitable[list[IPAddress]]]

LOOKUP_TIMEOUT_S = 5.0


async def system_lookup(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host`, in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


class AddressRefused(OSError):
    """A resolved address is refused. An `OSError`, so that aiohttp's connector passes it on
    as the cause of its connection error rather than swallowing it."""

    def __init__(self, host: str, address: IPAddress, reason: str) -> None:
        super().__init__(f"{host} resolves to {address}, a {reason} address")
        self.host = host
        self.address = address
        self.reason = reason


async def checked_addresses(
    host: str, port: int, lookup: Lookup, allow: Iterable[Network]
) -> list[IPAddress]:
    """Resolve `host` once and check every address it has.

    Raises:
        AddressRefused: any one address is refused (a name that mixes public and private
            addresses is refused whole: the connector might pick either).
        OSError: the name does not resolve, or not within `LOOKUP_TIMEOUT_S`.
    """
    try:
        addresses = await asyncio.wait_for(lookup(host, port), LOOKUP_TIMEOUT_S)
    except TimeoutError as exc:
        raise OSError(f"looking up {host} took longer than {LOOKUP_TIMEOUT_S:.0f} s") from exc
    if not addresses:
        raise OSError(f"{host} has no IPv4 or IPv6 address")
    allowed = tuple(allow)
    for address in addresses:
        reason = refusal(address, allowed)
        if reason is not None:
            raise AddressRefused(host, address, reason)
    return addresses
