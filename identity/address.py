"""Addresses (`local@domain`) and bare brand domains, as section 1 of the protocol defines them.

Normalisation is lowercasing only, and only of ASCII: non-ASCII input is refused rather than
case-folded, because Unicode case mapping can turn a look-alike (the Kelvin sign) into a plain
letter and so let two different inputs name one agent. Nothing is stripped: surrounding
whitespace is an error the sender should see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from identity.errors import AddressInvalid

_LOCAL = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_LABEL = re.compile(r"[a-z0-9-]{1,63}")
MAX_DOMAIN_LENGTH = 253


def _show(text: str) -> str:
    """Quote user input for a detail, cut short so a huge input cannot flood a log line."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


@dataclass(frozen=True, slots=True)
class Address:
    """A normalised agent address; `str()` gives the wire form `local@domain`."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


def parse_domain(text: str) -> str:
    """Normalise and check a DNS domain name; return it lowercased.

    Raises:
        AddressInvalid: with a detail naming the first rule the text breaks.
    """
    if not isinstance(text, str):
        raise AddressInvalid(f"a domain must be a string, not {type(text).__name__}")
    return _parse_domain(text)


@lru_cache(maxsize=4096)
def _parse_domain(text: str) -> str:
    """The checks of `parse_domain`, memoised: the same few domains arrive again and again."""
    if not text:
        raise AddressInvalid("the domain is empty")
    if not text.isascii():
        raise AddressInvalid(f"domain {_show(text)} has non-ASCII characters; use its ASCII form")
    domain = text.lower()
    if len(domain) > MAX_DOMAIN_LENGTH:
        raise AddressInvalid(
            f"domain is {len(domain)} characters long; at most {MAX_DOMAIN_LENGTH} are allowed"
        )
    labels = domain.split(".")
    if len(labels) < 2:
        raise AddressInvalid(f"domain {_show(domain)} needs at least one dot")
    for label in labels:
        if not label:
            raise AddressInvalid(
                f"domain {_show(domain)} has an empty label (a leading, trailing or doubled dot)"
            )
        if len(label) > 63:
            raise AddressInvalid(f"domain label {label[:20]!r}... is longer than 63 characters")
        if _LABEL.fullmatch(label) is None:
            raise AddressInvalid(f"domain label {label!r} may hold only letters, digits and '-'")
        if label[0] == "-" or label[-1] == "-":
            raise AddressInvalid(f"domain label {label!r} must not start or end with '-'")
    return domain


def parse_address(text: str) -> Address:
    """Normalise and check an agent address `local@domain`.

    Raises:
        AddressInvalid: with a detail naming what is wrong (missing '@', bad local part, bad
            domain).
    """
    if not isinstance(text, str):
        raise AddressInvalid(f"an address must be a string, not {type(text).__name__}")
    return _parse_address(text)


@lru_cache(maxsize=4096)
def _parse_address(text: str) -> Address:
    """The checks of `parse_address`, memoised (an `Address` is immutable, so sharing is safe)."""
    if not text.isascii():
        raise AddressInvalid(f"address {_show(text)} has non-ASCII characters")
    local, at, domain = text.lower().partition("@")
    if not at:
        raise AddressInvalid(f"address {_show(text)} has no '@'; the form is local@domain")
    if "@" in domain:
        raise AddressInvalid(f"address {_show(text)} has more than one '@'")
    if not local:
        raise AddressInvalid(f"address {_show(text)} has an empty local part before '@'")
    if len(local) > 64:
        raise AddressInvalid(
            f"the local part of {_show(text)} is {len(local)} characters; at most 64 are allowed"
        )
    if _LOCAL.fullmatch(local) is None:
        raise AddressInvalid(
            f"local part {_show(local)} must start with a letter or digit and hold only letters, "
            "digits, '.', '_' and '-'"
        )
    return Address(local, _parse_domain(domain))


def parse_recipient(text: str) -> Address | str:
    """Parse an envelope's `to`: an address, or a bare brand domain (first envelope only).

    Returns:
        An `Address` when the text holds '@', otherwise the normalised domain string.
    """
    if isinstance(text, str) and "@" in text:
        return parse_address(text)
    return parse_domain(text)
