"""The edwards25519 curve, only as far as telling small-order public keys apart.

A public key whose point has small order (its order divides the cofactor 8) is one of the
eight points of the curve's torsion subgroup. With such a key, [k]A takes at most eight values
whatever the message, so a signature can be made without any private key: with the identity
as the key, R = the identity's encoding and S = 0 verifies for every message. A signature
under such a key proves nothing about who made it.

Verification here is done by `cryptography`; this module does no signing and no verifying. It
decodes a point (RFC 8032 section 5.1.3) and multiplies it by 8, in plain integer arithmetic
on affine coordinates: slow next to the C code, but it runs only when a key is registered.
Decoding is lenient where lenient verifiers are (a y of p or more, a set sign bit on x = 0),
because those encodings name the same weak points for the verifiers that accept them.
"""

from __future__ import annotations

P = 2**255 - 19
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
COFACTOR = 8
ENCODED_BYTES = 32

Point = tuple[int, int]
IDENTITY: Point = (0, 1)


def decode(raw: bytes) -> Point | None:
    """The affine point (x, y) that 32 bytes encode, or None when no point has that y.

    RFC 8032 section 5.1.3, except that a y of p or more is taken modulo p, and x = 0 with
    the sign bit set is taken as x = 0, as verifiers that skip those two checks do.

    Raises:
        ValueError: `raw` is not 32 bytes.
    """
    if len(raw) != ENCODED_BYTES:
        raise ValueError(f"an edwards25519 point is encoded in {ENCODED_BYTES} bytes")
    number = int.from_bytes(raw, "little")
    sign = number >> 255
    y = (number & ((1 << 255) - 1)) % P
    # x² = u / v, from the curve equation -x² + y² = 1 + d·x²·y².
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    square = v * x * x % P
    if square == (-u) % P and square != u:
        x = x * SQRT_M1 % P  # the candidate was a square root of -u/v
    elif square != u:
        return None  # u/v is no square: no point has this y
    if x & 1 != sign:
        x = (P - x) % P  # x = 0 stays 0: the lenient reading of a set sign bit
    return x, y


def add(a: Point, b: Point) -> Point:
    """a + b on the curve (the complete affine addition law; also doubles)."""
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x = (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P
    y = (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P
    return x, y


def small_order(raw: bytes) -> bool:
    """Tell whether 32 bytes encode a point of small order: [8]A is the identity.

    These are the 8 torsion points in any of their 14 encodings (the 8 canonical ones, x = 0
    with the sign bit set, y + p where that fits in 255 bits). Bytes that encode no point are
    not small-order: no verifier can use them, so no signature verifies with them.

    Raises:
        ValueError: `raw` is not 32 bytes.
    """
    point = decode(raw)
    if point is None:
        return False
    for _ in range(COFACTOR.bit_length() - 1):  # three doublings: [8]A
        point = add(point, point)
    return point == IDENTITY
