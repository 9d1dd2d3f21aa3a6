"""Addresses and domains: the table of section 1."""

from __future__ import annotations

import pytest

from identity.address import Address, parse_address, parse_domain, parse_recipient
from identity.errors import AddressInvalid

VALID = [
    ("alice@people.example", "alice@people.example"),
    ("Alice@People.Example", "alice@people.example"),
    ("support@sonos.example", "support@sonos.example"),
    ("a@b.c", "a@b.c"),
    ("0@x-y.example", "0@x-y.example"),
    ("j.doe_2-x@mail.sub.example", "j.doe_2-x@mail.sub.example"),
    ("a" * 64 + "@example.com", "a" * 64 + "@example.com"),
    ("x@" + "a" * 63 + ".example", "x@" + "a" * 63 + ".example"),
]

INVALID = [
    ("alice", "no '@'"),
    ("@people.example", "empty local part"),
    ("alice@", "domain is empty"),
    ("a@b@c.example", "more than one '@'"),
    (".alice@people.example", "must start with a letter or digit"),
    ("-alice@people.example", "must start with a letter or digit"),
    ("al ice@people.example", "must start with a letter or digit"),
    ("al+ice@people.example", "must start with a letter or digit"),
    ("a" * 65 + "@example.com", "at most 64"),
    ("alice@localhost", "at least one dot"),
    ("alice@people..example", "empty label"),
    ("alice@.people.example", "empty label"),
    ("alice@people.example.", "empty label"),
    ("alice@-people.example", "must not start or end with '-'"),
    ("alice@people-.example", "must not start or end with '-'"),
    ("alice@peo_ple.example", "only letters, digits and '-'"),
    ("alice@" + "a" * 64 + ".example", "longer than 63"),
    ("alice@" + ".".join(["abcdefghi"] * 26), "at most 253"),
    (" alice@people.example", "must start with a letter or digit"),
    ("alice@people.example ", "only letters, digits and '-'"),
    ("\u212aelvin@people.example", "non-ASCII"),
    ("alice@b\u00fccher.example", "non-ASCII"),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid_addresses_normalise(text: str, expected: str) -> None:
    """Valid addresses parse and lowercase to the expected wire form."""
    address = parse_address(text)
    assert str(address) == expected
    assert address == Address(*expected.split("@"))


@pytest.mark.parametrize(("text", "problem"), INVALID)
def test_invalid_addresses_say_what_is_wrong(text: str, problem: str) -> None:
    """Each invalid address raises address_invalid with a detail naming the broken rule."""
    with pytest.raises(AddressInvalid) as caught:
        parse_address(text)
    assert caught.value.code == "address_invalid"
    assert problem in caught.value.detail


def test_non_string_address_is_refused() -> None:
    """A non-string address is address_invalid, not a TypeError."""
    with pytest.raises(AddressInvalid, match="must be a string"):
        parse_address(42)  # type: ignore[arg-type]
    with pytest.raises(AddressInvalid, match="must be a string"):
        parse_domain(["a.b"])  # type: ignore[arg-type]


def test_domain_rules() -> None:
    """Domains lowercase; a 253-character domain passes and 254 fails."""
    assert parse_domain("Sonos.Example") == "sonos.example"
    long_ok = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(long_ok) == 253
    assert parse_domain(long_ok) == long_ok
    with pytest.raises(AddressInvalid, match="at most 253"):
        parse_domain(long_ok + "b")


def test_recipient_is_address_or_bare_domain() -> None:
    """`to` parses as an Address when it holds '@', otherwise as a normalised domain."""
    assert parse_recipient("SONOS.example") == "sonos.example"
    assert parse_recipient("support@sonos.example") == Address("support", "sonos.example")
    with pytest.raises(AddressInvalid):
        parse_recipient("sonos")


def test_address_is_frozen() -> None:
    """An Address cannot be changed after parsing."""
    address = parse_address("alice@people.example")
    with pytest.raises(AttributeError):
        address.local = "mallory"  # type: ignore[misc]
