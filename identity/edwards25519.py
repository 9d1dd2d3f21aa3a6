"""The edwards25519 curve, only as far as telling small-order public keys apart.

A public key whose point has small order (its order divides the cofactor 8) is one of the
eight points of the curve's torsion subgroup. With such a key, [k]A takes at most eight values
whatever the message, so a signature can be made without any private key: with the identity
as the key, R = the identity's encoding and S = 0 verifies for every message. A signature
under such a key proves nothing about who made it.

Verification here is done by `cryptography`; this module does no signing and no verifying.
It knows the five y coordinates of the small-order points, derived once at import from the
curve equation, and tells a weak key by its y. It reads encodings as lenient verifiers do (a
y of p or more, a set sign bit on x = 0; RFC 8032 section 5.1.3 refuses both), because those
encodings name the same weak points for the verifiers that accept them.
"""

from __future__ import annotations

P = 2**255 - 19
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
ENCODED_BYTES = 32


def _square_root(a: int) -> int | None:
    """A square root of `a` modulo p, or None (p = 5 mod 8: a^((p+3)/8), times √-1 if need be)."""
    a %= P
    root = pow(a, (P + 3) // 8, P)
    if root * root % P != a:
        root = root * SQRT_M1 % P
    return root if root * root % P == a else None


def _small_order_ys() -> frozenset[int]:
    """The y of every point of small order: 1 (the identity), p - 1 (order 2), 0 (the two of
    order 4, x = ±√-1), and ±y₈ for the four of order 8. Doubling one of those gives a point of
    order 4, whose y is 0: y² + x² = 0, so with the curve equation d·y⁴ + 2·y² - 1 = 0, and
    y² = (-1 ± √(1 + d)) / d; one of the two is a square."""
    ys = {0, 1, P - 1}
    root = _square_root(1 + D)
    assert root is not None, "1 + d is a square modulo p"
    for y_squared in ((-1 + root) * pow(D, -1, P), (-1 - root) * pow(D, -1, P)):
        y = _square_root(y_squared)
        if y is not None:
            ys.update((y, P - y))
    assert len(ys) == 5, "five y values: 1, -1, 0 and ±y8"
    return frozenset(ys)


_SMALL_ORDER_YS = _small_order_ys()


def small_order(raw: bytes) -> bool:
    """Tell whether 32 bytes encode a point of small order ([8]A is the identity).

    These are the 8 torsion points in any of their 14 encodings (the 8 canonical ones, x = 0
    with the sign bit set, y + p where that fits in 255 bits). Every point with one of their
    five y values is one of them (x is then determined up to its sign, and -T is of small order
    too), so the y alone decides, in about a microsecond: the check runs before any proof of
    possession, so it must cost an anonymous caller next to nothing. Bytes that encode no
    point are not small-order: no verifier can use them, so no signature verifies with them.

    Raises:
        ValueError: `raw` is not 32 bytes.
    """
    if len(raw) != ENCODED_BYTES:
        raise ValueError(f"an edwards25519 point is encoded in {ENCODED_BYTES} bytes")
    return (int.from_bytes(raw, "little") & ((1 << 255) - 1)) % P in _SMALL_ORDER_YS
