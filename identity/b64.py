"""Strict base64url without padding, the encoding of JWK members, kids and signatures.

Strict means one spelling per byte string: no padding, no foreign characters and no stray
bits in the last character, so that two different texts never decode to the same bytes.
"""

from __future__ import annotations

import base64
import binascii


def b64url_encode(data: bytes) -> str:
    """Encode bytes as base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url without padding, refusing any non-canonical spelling.

    Raises:
        ValueError: `text` has padding, characters outside the alphabet, an impossible length
            or non-zero unused bits.
    """
    if not isinstance(text, str):
        raise ValueError("base64url text must be a string")
    if len(text) % 4 == 1:
        raise ValueError("base64url text has an impossible length")
    try:
        data = base64.urlsafe_b64decode(text + "==")
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"base64url text does not decode: {exc}") from None
    # The decoder skips foreign characters and tolerates stray bits and padding; encoding the
    # result again reproduces the input only when the input was the one canonical spelling.
    if b64url_encode(data) != text:
        raise ValueError(
            "base64url text may hold only A-Z a-z 0-9 - _, no padding, and no stray bits"
        )
    return data
