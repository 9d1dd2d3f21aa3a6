"""Which network addresses the gateway may deliver to: pure classification, no I/O.

An endpoint URL is only as safe as the address the gateway finally connects to, so the checks
here run twice: at registration (`gateway.endpoints.EndpointGuard`) and at connect time, on
every address the one DNS lookup returned (`gateway.delivery.sender`). The rules:

- A host written as an IP address must be written the standard way: four decimal parts for
  IPv4 (no `2130706433`, `0x7f.1`, `017700000001` or `127.1`, which C resolvers accept and
  turn into loopback) or a bracketed IPv6 address without a zone.
- An address is refused when it is loopback, private, link-local (cloud metadata lives at
  169.254.169.254), CGNAT, multicast, unspecified, reserved, documentation or benchmarking
  space, IPv6 unique-local or link-local, or an IPv6 form that carries such an IPv4 address
  (IPv4-mapped, IPv4-compatible, 6to4, NAT64).
- `allow` networks (`SWITCHBOARD_ALLOW_PRIVATE_ENDPOINTS`) open exceptions, for development.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), reason) for cidr, reason in pairs)


# First match names the reason. Order matters only for overlapping entries.
_REFUSED_V4 = _nets(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "CGNAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_REFUSED_V6 = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "reserved"),
    ("100::/64", "reserved"),
    ("2001::/23", "reserved"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "reserved"),
    ("ff00::/8", "multicast"),
)
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")

_NUMERIC_LABEL = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)")
_DECIMAL_OCTET = re.compile(r"(?:0|[1-9][0-9]{0,2})")


@dataclass(frozen=True, slots=True)
class EndpointUrl:
    """An endpoint URL taken apart: what the sender connects to and how it names the host."""

    url: str
    scheme: str
    host: str  # lowercase name, or the IP address's text
    port: int
    literal: IPAddress | None  # set when the URL names an IP address rather than a DNS name


class UrlRefused(ValueError):
    """The URL itself is unacceptable (scheme, credentials, a non-standard IP literal)."""


def parse_endpoint(url: str) -> EndpointUrl:
    """Split an endpoint URL and check its form; raise `UrlRefused` saying what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"{url!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UrlRefused(f"{url!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("endpoint URLs may not carry credentials")
    host = parts.hostname.rstrip(".")
    if not host:
        raise UrlRefused(f"{url!r} has an empty host")
    literal = host_literal(host)
    return EndpointUrl(
        url=url,
        scheme=parts.scheme,
        host=str(literal) if literal is not None else host,
        port=port if port is not None else (443 if parts.scheme == "https" else 80),
        literal=literal,
    )


def host_literal(host: str) -> IPAddress | None:
    """The IP address a URL host spells, None for a DNS name.

    Raises:
        UrlRefused: the host is a number in a form other than standard dotted-quad decimal or
            plain IPv6 (a zone index included), which resolvers would read as some address.
    """
    if ":" in host:
        if "%" in host:
            raise UrlRefused(f"{host!r}: IPv6 zone indexes are not allowed in endpoint URLs")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise UrlRefused(f"{host!r} is not a valid IPv6 address") from exc
    labels = host.split(".")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None  # a DNS name (a name whose last label is a number is an IPv4 literal)
    standard = len(labels) == 4 and all(_DECIMAL_OCTET.fullmatch(label) for label in labels)
    if standard and all(int(label) <= 255 for label in labels):
        return ipaddress.IPv4Address(host)
    raise UrlRefused(
        f"{host!r} is not a standard IP address: write IPv4 as four decimal numbers"
        " (a.b.c.d, no leading zeros) or use a DNS name"
    )


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would reach (mapped, compatible, 6to4,
    NAT64), or None."""
    if address in _MAPPED or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIXTOFOUR:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    return None


def classify(address: IPAddress) -> str | None:
    """The kind of refused range `address` is in ("loopback", "private", …), None when public."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = classify(inner)
            return f"{reason} (as {address})" if reason else None
        if address.scope_id:
            return "link-local"
        table: Iterable[tuple[Network, str]] = _REFUSED_V6
    else:
        table = _REFUSED_V4
    for network, reason in table:
        if address in network:
            return reason
    if not address.is_global:
        return "reserved"
    return None


def refusal(address: IPAddress, allow: Iterable[Network] = ()) -> str | None:
    """Why the gateway will not connect to `address`, or None when it may.

    An address inside an `allow` network is accepted; so is an IPv6 form whose embedded IPv4
    address is inside one (the connection would reach that IPv4 address).
    """
    allowed = tuple(allow)
    targets: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            targets.append(inner)
    if any(_within(target, allowed) for target in targets):
        return None
    return classify(address)


def _within(address: IPAddress, networks: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)
