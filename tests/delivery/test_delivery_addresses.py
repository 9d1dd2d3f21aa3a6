"""The pure address rules: every refused range, every literal form, and the allow-list."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.addresses import (
    UrlRefused,
    classify,
    embedded_ipv4,
    host_literal,
    parse_endpoint,
    refusal,
)

REFUSED = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.10", "documentation"),
    ("192.88.99.1", "reserved"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fc00::1", "unique-local"),
    ("fd12:3456:789a::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "reserved"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "reserved"),
    ("2001::1", "reserved"),
    ("64:ff9b:1::1", "reserved"),
    # IPv6 forms that carry a refused IPv4 address
    ("::ffff:127.0.0.1", "loopback (as ::ffff:7f00:1)"),
    ("::ffff:169.254.169.254", "link-local (as ::ffff:a9fe:a9fe)"),
    ("::ffff:10.0.0.1", "private (as ::ffff:a00:1)"),
    ("::127.0.0.1", "loopback (as ::7f00:1)"),
    ("::10.1.2.3", "private (as ::a01:203)"),
    ("64:ff9b::127.0.0.1", "loopback (as 64:ff9b::7f00:1)"),
    ("64:ff9b::a9fe:a9fe", "link-local (as 64:ff9b::a9fe:a9fe)"),
    ("2002:7f00:1::1", "loopback (as 2002:7f00:1::1)"),
    ("2002:c0a8:101::", "private (as 2002:c0a8:101::)"),
    ("2002:6440:1::", "CGNAT (as 2002:6440:1::)"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_ranges(address: str, reason: str) -> None:
    """Each refused range is named, for IPv4, IPv6 and IPv6 forms embedding IPv4."""
    assert classify(ipaddress.ip_address(address)) == reason
    assert refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    """Public addresses, also as IPv6 forms of public IPv4, are accepted."""
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # decimal 127.0.0.1
        "0x7f000001",  # hex
        "0x7f.1",
        "0x7f.0.0.1",
        "017700000001",  # octal
        "0177.0.0.1",
        "0177.1",
        "127.1",
        "127.0.1",
        "127.000.000.001",
        "127.0.0.01",
        "1.2.3.256",
        "1.2.3.4.5",
        "169.254.43518",
        "0",
        "0x",
        "example.123",
        "fe80::1%eth0",
        "[::1",
    ],
)
def test_non_standard_ip_literals_are_refused(host: str) -> None:
    """Numeric hosts other than dotted-quad decimal are refused outright, never resolved."""
    with pytest.raises(UrlRefused):
        host_literal(host)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://0177.0.0.1:8080/hook",
        "https://0x7f000001./",
        "ftp://example.com/",
        "file:///etc/passwd",
        "https://user:secret@example.com/",
        "https:///nohost",
        "https://example.com:99999/",
        "gopher://127.0.0.1/",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    """URL forms that are not plain http(s) with a standard host are refused by their form."""
    with pytest.raises(UrlRefused):
        parse_endpoint(url)


@pytest.mark.parametrize(
    ("url", "host", "port", "literal"),
    [
        ("https://hooks.acme.example/in", "hooks.acme.example", 443, None),
        ("http://hooks.acme.example:8080/", "hooks.acme.example", 8080, None),
        ("https://HOOKS.Acme.Example./x", "hooks.acme.example", 443, None),
        ("https://93.184.216.34/x", "93.184.216.34", 443, "93.184.216.34"),
        ("http://[2606:4700::1111]:81/", "2606:4700::1111", 81, "2606:4700::1111"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1", 80, "::ffff:7f00:1"),
        ("https://1.example/", "1.example", 443, None),
    ],
)
def test_urls_are_taken_apart(url: str, host: str, port: int, literal: str | None) -> None:
    """Accepted URL forms yield the host to connect to, its port, and whether it is a literal."""
    endpoint = parse_endpoint(url)
    assert (endpoint.host, endpoint.port) == (host, port)
    assert (str(endpoint.literal) if endpoint.literal else None) == literal


def test_allow_list_opens_exceptions_also_through_embedded_forms() -> None:
    """An allowed network admits its addresses and their IPv6-mapped forms, nothing else."""
    allow = (ipaddress.ip_network("127.0.0.0/8"),)
    assert refusal(ipaddress.ip_address("127.0.0.1"), allow) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allow) is None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allow) == "private"
    assert refusal(ipaddress.ip_address("::1"), allow) == "loopback"
    assert refusal(ipaddress.ip_address("::1"), (ipaddress.ip_network("::1/128"),)) is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_dotted_quad_parses_to_its_address(value: int) -> None:
    """Standard dotted-quad text parses to exactly the address it spells."""
    address = ipaddress.IPv4Address(value)
    assert host_literal(str(address)) == address


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_integer_forms_are_always_refused(value: int) -> None:
    """A whole address written as one decimal, hex or octal number is always refused."""
    for text in (str(value), hex(value), "0" + oct(value)[2:]):
        with pytest.raises(UrlRefused):
            host_literal(text)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_embedded_ipv4_round_trips(value: int) -> None:
    """Mapped, NAT64 and 6to4 forms give back the IPv4 address they carry."""
    inner = ipaddress.IPv4Address(value)
    mapped = ipaddress.IPv6Address(f"::ffff:{inner}")
    nat64 = ipaddress.IPv6Address(f"64:ff9b::{inner}")
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (value << 80))
    assert embedded_ipv4(mapped) == inner
    assert embedded_ipv4(nat64) == inner
    assert embedded_ipv4(sixtofour) == inner
