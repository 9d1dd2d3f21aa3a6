"""Weak (small-order) Ed25519 keys: which encodings they are, and why they are refused.

The small-order points are derived here from the curve equation alone, with this file's own
field arithmetic, so the module's decode-and-multiply check is compared with an independent
answer rather than with itself.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from identity import edwards25519
from identity.b64 import b64url_encode
from identity.envelope import KeyState
from identity.errors import TokenInvalid
from identity.keys import PrivateKey, PublicKey
from identity.tokens import verify_agent_token

# The curve, written out again rather than imported: -x² + y² = 1 + d·x²·y² over GF(p).
FIELD = 2**255 - 19
CURVE_D = -121665 * pow(121666, -1, FIELD) % FIELD
MINUS_ONE_ROOT = pow(2, (FIELD - 1) // 4, FIELD)
NEUTRAL = (0, 1)

Pt = tuple[int, int]


def _roots(a: int) -> list[int]:
    """Square roots of `a` in GF(p), p = 5 mod 8 (Atkin's candidate, times √-1 if needed)."""
    a %= FIELD
    candidate = pow(a, (FIELD + 3) // 8, FIELD)
    for root in (candidate, candidate * MINUS_ONE_ROOT % FIELD):
        if root * root % FIELD == a:
            return sorted({root, FIELD - root if root else 0})
    return []


def _decode(raw: bytes) -> Pt | None:
    """The point a lenient verifier reads from 32 bytes (RFC 8032 5.1.3, but y ≥ p taken
    modulo p and a set sign bit on x = 0 ignored), or None when no point has that y."""
    number = int.from_bytes(raw, "little")
    y = (number & ((1 << 255) - 1)) % FIELD
    roots = _roots((y * y - 1) * pow((CURVE_D * y * y + 1) % FIELD, FIELD - 2, FIELD))
    if not roots:
        return None
    sign = number >> 255
    x = next((root for root in roots if root & 1 == sign), roots[0])
    return x, y


def _on_curve(point: Pt) -> bool:
    x, y = point
    return (y * y - x * x - 1 - CURVE_D * x * x * y * y) % FIELD == 0


def _plus(a: Pt, b: Pt) -> Pt:
    """The affine addition law of a twisted Edwards curve with a = -1."""
    (x1, y1), (x2, y2) = a, b
    cross = CURVE_D * x1 * x2 * y1 * y2
    x = (x1 * y2 + y1 * x2) * pow((1 + cross) % FIELD, FIELD - 2, FIELD) % FIELD
    y = (y1 * y2 + x1 * x2) * pow((1 - cross) % FIELD, FIELD - 2, FIELD) % FIELD
    return x, y


def _order(point: Pt) -> int:
    """The order of a point known to be of small order (at most 8)."""
    multiple, order = point, 1
    while multiple != NEUTRAL:
        multiple, order = _plus(multiple, point), order + 1
        assert order <= 8, point
    return order


def _torsion() -> set[Pt]:
    """The 8 points of order dividing 8, solved from the curve equation.

    x = 0 gives y = ±1 (orders 1 and 2); y = 0 gives x = ±√-1 (order 4); a point of order 8
    doubles to one with y = 0, that is x² = -y², and then the curve gives
    d·y⁴ + 2·y² - 1 = 0, so y² = (-1 ± √(1 + d)) / d.
    """
    points: set[Pt] = {(0, 1), (0, FIELD - 1)}
    points |= {(x, 0) for x in _roots(-1)}
    for s in _roots(1 + CURVE_D):
        y_squared = (s - 1) * pow(CURVE_D, FIELD - 2, FIELD) % FIELD
        for y in _roots(y_squared):
            points |= {(x, y) for x in _roots(-y * y)}
    return points


def _encodings(point: Pt) -> set[bytes]:
    """Every 32-byte string that a lenient verifier reads as `point`: the canonical one, the
    sign bit set on x = 0, and y + p where it fits below 2²⁵⁵."""
    x, y = point
    signs = {0, 1} if x == 0 else {x & 1}
    ys = {y, y + FIELD} if y + FIELD < 2**255 else {y}
    return {(value | sign << 255).to_bytes(32, "little") for value in ys for sign in signs}


TORSION = _torsion()
WEAK = frozenset(encoding for point in TORSION for encoding in _encodings(point))
IDENTITY_ENCODING = (1).to_bytes(32, "little")
IDENTITY_KEYS = sorted(_encodings(NEUTRAL))


def test_the_derived_torsion_is_the_whole_small_order_subgroup() -> None:
    """Eight distinct points on the curve, closed under addition, orders 1, 2, 4, 4 and 8 ×4.

    The curve has 8·ℓ points with ℓ prime, so its points of order dividing 8 form one cyclic
    group of 8: finding 8 such points is finding all of them.
    """
    assert len(TORSION) == 8
    assert all(_on_curve(point) for point in TORSION)
    assert all(_plus(a, b) in TORSION for a in TORSION for b in TORSION)
    assert sorted(_order(point) for point in TORSION) == [1, 2, 4, 4, 8, 8, 8, 8]
    # 8 canonical encodings, 2 with the sign bit on x = 0, 4 with y ≥ p (y = 0 and y = 1).
    assert len(WEAK) == 14


@pytest.mark.parametrize("raw", sorted(WEAK), ids=lambda raw: raw.hex()[:8] + raw.hex()[-2:])
def test_every_small_order_encoding_is_weak(raw: bytes) -> None:
    """Each encoding, canonical or not, decodes to its torsion point and is reported weak; the
    key still loads (stored keys must keep working), it is only reported."""
    assert _decode(raw) in TORSION
    assert edwards25519.small_order(raw)
    assert PublicKey.from_bytes(raw).small_order
    assert PublicKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}).small_order


def test_no_neighbour_of_a_weak_encoding_is_weak_unless_listed() -> None:
    """Every one-bit change of every weak encoding is weak exactly when it is in the derived
    set: the check reports these 14 strings and nothing near them."""
    for raw in WEAK:
        number = int.from_bytes(raw, "little")
        for bit in range(256):
            near = (number ^ (1 << bit)).to_bytes(32, "little")
            assert edwards25519.small_order(near) == (near in WEAK), (raw.hex(), bit)


def test_generated_and_vector_keys_are_not_weak(vectors: dict[str, Any]) -> None:
    """Three hundred fresh keys and every key of the shared vectors are ordinary keys, and their
    points decode to the curve as this file's arithmetic sees it."""
    seeds = [os.urandom(32) for _ in range(300)]
    seeds += [bytes.fromhex(entry["seed_hex"]) for entry in vectors["keys"].values()]
    raws = [PrivateKey.from_seed(seed).public.raw for seed in seeds]
    for raw in raws:
        point = _decode(raw)
        assert point is not None and _on_curve(point)
        assert not edwards25519.small_order(raw)
        assert not PublicKey.from_bytes(raw).small_order


@given(st.binary(min_size=32, max_size=32))
def test_any_32_bytes_are_weak_only_when_listed(raw: bytes) -> None:
    """Arbitrary bytes (points, non-points, non-canonical) are weak exactly when listed."""
    assert edwards25519.small_order(raw) == (raw in WEAK)


def test_a_key_with_a_small_order_component_is_not_weak() -> None:
    """A + T (an ordinary key plus a torsion point) has large order: signatures with it still
    need A's private key, so it is not refused."""
    for _ in range(20):
        point = _decode(PrivateKey.generate().public.raw)
        assert point is not None
        for torsion in TORSION - {NEUTRAL}:
            x, y = _plus(point, torsion)
            assert not edwards25519.small_order((y | (x & 1) << 255).to_bytes(32, "little"))


def test_bytes_that_are_no_point_are_not_weak() -> None:
    """A y for which x² = (y² - 1)/(d·y² + 1) has no root names no point: not small-order
    (nothing verifies with it)."""
    y = next(
        y for y in range(2, 100) if not _roots((y * y - 1) * pow(CURVE_D * y * y + 1, -1, FIELD))
    )
    raw = y.to_bytes(32, "little")
    assert _decode(raw) is None
    assert not edwards25519.small_order(raw)


def test_wrong_length_is_a_value_error() -> None:
    """The check is for 32-byte encodings only."""
    with pytest.raises(ValueError, match="32 bytes"):
        edwards25519.small_order(bytes(31))


# Why the rule: forgeries that verify with the `cryptography` library (OpenSSL) ----------------

FORGED = IDENTITY_ENCODING + bytes(32)  # R = the identity, S = 0


@pytest.mark.parametrize("raw", IDENTITY_KEYS, ids=lambda raw: raw.hex()[:2] + raw.hex()[-2:])
def test_identity_keys_verify_one_signature_for_every_message(raw: bytes) -> None:
    """With the identity as the key, in any of its 4 encodings, R = identity and S = 0 verify
    for any message with OpenSSL: [S]B - [k]A is the identity whatever k is, and no private
    key is involved. `PublicKey.verify` refuses them."""
    key = Ed25519PublicKey.from_public_bytes(raw)
    for _ in range(50):
        message = os.urandom(40)
        key.verify(FORGED, message)  # raises InvalidSignature if refused
        assert not PublicKey.from_bytes(raw).verify(FORGED, message)


@pytest.mark.parametrize("raw", sorted(WEAK), ids=lambda raw: raw.hex()[:8] + raw.hex()[-2:])
def test_every_weak_key_verifies_forgeries(raw: bytes) -> None:
    """For any small-order key A, the same forged signature verifies with OpenSSL whenever
    [k]A is the identity, which is for about one message in ord(A): among 200 messages, some
    verify. `PublicKey.verify` accepts none of them."""
    key = Ed25519PublicKey.from_public_bytes(raw)
    ours = PublicKey.from_bytes(raw)
    verified = 0
    for index in range(200):
        message = b"message %d" % index
        assert not ours.verify(FORGED, message)
        try:
            key.verify(FORGED, message)
        except InvalidSignature:
            continue
        verified += 1
    assert verified > 0


def test_a_forged_agent_token_for_an_identity_key_proves_nothing() -> None:
    """An agent JWT whose signature OpenSSL verifies with the identity point as the key, made
    with no private key, is refused: the proof of possession verifies only real keys."""
    public = PublicKey.from_bytes(IDENTITY_ENCODING)
    now = datetime(2026, 11, 26, 6, 10, tzinfo=UTC)
    header = b64url_encode(b'{"alg":"EdDSA","kid":"%s","typ":"JWT"}' % public.kid.encode())
    issued = int(now.timestamp())
    claims = b64url_encode(
        b'{"iss":"mallory@people.example","sub":"mallory@people.example",'
        b'"aud":"gateway.example","iat":%d,"exp":%d,"jti":"x"}' % (issued, issued + 60)
    )
    signing_input = f"{header}.{claims}".encode()
    Ed25519PublicKey.from_public_bytes(IDENTITY_ENCODING).verify(FORGED, signing_input)
    token = f"{header}.{claims}.{b64url_encode(FORGED)}"
    with pytest.raises(TokenInvalid, match="signature"):
        verify_agent_token(token, {public.kid: KeyState(public)}, "gateway.example", now)
