"""Bearer credentials: agent JWTs signed with an agent's own key, and opaque `sbt_` tokens.

An agent JWT (PROTOCOL section 4) is a compact JWS with header
`{"alg":"EdDSA","kid":<kid>,"typ":"JWT"}` and claims `iss` = `sub` = the agent's address,
`aud`, `iat`, `exp` (at most 300 s after `iat`) and `jti`. `peek_agent_token` reads it without
trusting it, so the gateway can fetch the keys of the claimed address before verifying. Replay
of a `jti` inside its short life is the gateway's concern (it needs storage).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from identity.address import parse_address
from identity.b64 import b64url_decode, b64url_encode
from identity.envelope import CLOCK_SKEW, KeyState
from identity.errors import AddressInvalid, TokenInvalid
from identity.ids import new_ulid
from identity.keys import PrivateKey

MAX_TOKEN_TTL = 300
MAX_TOKEN_LENGTH = 8 * 1024
OPAQUE_PREFIX = "sbt_"


@dataclass(frozen=True)
class TokenClaims:
    """What an agent token says; trustworthy only when returned by `verify_agent_token`."""

    address: str
    kid: str
    audience: str
    issued_at: datetime
    expires_at: datetime
    jti: str


def _encode_part(value: Mapping[str, object]) -> str:
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return b64url_encode(compact.encode("utf-8"))


def issue_agent_token(
    key: PrivateKey,
    address: str,
    audience: str,
    now: datetime,
    ttl: int = MAX_TOKEN_TTL,
    jti: str | None = None,
) -> str:
    """Sign an agent JWT for `address`, good for `ttl` seconds from `now`.

    Raises:
        AddressInvalid: `address` is not an address.
        ValueError: `ttl` is outside 1..300 seconds, which verifiers would refuse.
    """
    if not 1 <= ttl <= MAX_TOKEN_TTL:
        raise ValueError(f"ttl must be between 1 and {MAX_TOKEN_TTL} seconds, not {ttl}")
    subject = str(parse_address(address))
    issued = int(now.timestamp())
    header = {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}
    claims = {
        "iss": subject,
        "sub": subject,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl,
        "jti": jti if jti is not None else new_ulid(now),
    }
    signing_input = f"{_encode_part(header)}.{_encode_part(claims)}"
    signature = key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


@dataclass(frozen=True)
class _Parsed:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _decode_json_part(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(text).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: too deep
        raise TokenInvalid(f"the token's {what} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise TokenInvalid(f"the token's {what} must be a JSON object")
    return value


def _split(token: str) -> _Parsed:
    if not isinstance(token, str) or not token:
        raise TokenInvalid("the bearer token is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid(f"the bearer token is longer than {MAX_TOKEN_LENGTH} characters")
    pieces = token.split(".")
    if len(pieces) != 3:
        raise TokenInvalid(
            f"an agent token is a JWT of 3 dot-separated parts; this one has {len(pieces)}"
        )
    header = _decode_json_part(pieces[0], "header")
    claims = _decode_json_part(pieces[1], "claims")
    try:
        signature = b64url_decode(pieces[2])
    except ValueError:
        raise TokenInvalid("the token's signature is not base64url without padding") from None
    return _Parsed(header, claims, f"{pieces[0]}.{pieces[1]}".encode("ascii"), signature)


def _numeric_date(claims: Mapping[str, Any], name: str) -> datetime:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenInvalid(f'the token claim "{name}" must be a number of seconds since 1970')
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise TokenInvalid(f'the token claim "{name}" is out of range') from None


def _claims_of(parsed: _Parsed) -> TokenClaims:
    header, claims = parsed.header, parsed.claims
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenInvalid('the token header needs a "kid" naming the signing key')
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        raise TokenInvalid('the token claim "iss" (the agent\'s address) is missing')
    audience = claims.get("aud")
    if isinstance(audience, list) and audience and all(isinstance(a, str) for a in audience):
        first_audience = audience[0]
    elif isinstance(audience, str):
        first_audience = audience
    else:
        raise TokenInvalid('the token claim "aud" must be a string or a list of strings')
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise TokenInvalid('the token claim "jti" must be a non-empty string')
    return TokenClaims(
        address=issuer,
        kid=kid,
        audience=first_audience,
        issued_at=_numeric_date(claims, "iat"),
        expires_at=_numeric_date(claims, "exp"),
        jti=jti,
    )


def peek_agent_token(token: str) -> TokenClaims:
    """Read an agent token's claims WITHOUT verifying it (to look up the issuer's keys).

    Raises:
        TokenInvalid: the token is not a well-formed agent JWT.
    """
    return _claims_of(_split(token))


def verify_agent_token(
    token: str, keys: Mapping[str, KeyState], audience: str, now: datetime
) -> TokenClaims:
    """Verify an agent token against the issuer's keys, this gateway's domain and the clock.

    Args:
        token: The compact JWT from `Authorization: Bearer`.
        keys: The keys of the address the token claims (see `peek_agent_token`), by kid.
        audience: This gateway's domain.
        now: The verifier's clock, timezone-aware.

    Raises:
        TokenInvalid: the first rule the token breaks, named in the detail.
    """
    parsed = _split(token)
    header, claims = parsed.header, parsed.claims
    if header.get("alg") != "EdDSA":
        raise TokenInvalid(f'the token header "alg" must be "EdDSA", not {header.get("alg")!r}')
    if header.get("typ") != "JWT":
        raise TokenInvalid(f'the token header "typ" must be "JWT", not {header.get("typ")!r}')
    if "crit" in header:
        raise TokenInvalid('the token header has "crit" extensions, which are not supported')
    result = _claims_of(parsed)
    if claims.get("sub") != result.address:
        raise TokenInvalid('the token claims "iss" and "sub" must both be the agent\'s address')
    try:
        parse_address(result.address)
    except AddressInvalid as exc:
        raise TokenInvalid(f'the token claim "iss" is not an address: {exc.detail}') from None
    state = keys.get(result.kid)
    if state is None:
        raise TokenInvalid(f"key {result.kid[:64]!r} is not a key of {result.address}")
    if state.revoked:
        raise TokenInvalid(f"key {result.kid!r} of {result.address} is revoked")
    if not state.public.verify(parsed.signature, parsed.signing_input):
        raise TokenInvalid("the token's signature does not verify with the key it names")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if audience not in audiences:
        raise TokenInvalid(f"the token is for {audiences!r:.100}, not this gateway ({audience})")
    if result.issued_at > now + CLOCK_SKEW:
        raise TokenInvalid("the token was issued in the future (its iat is ahead of the clock)")
    if result.expires_at <= now:
        raise TokenInvalid(f"the token expired at {result.expires_at.isoformat()}; issue a new one")
    if result.expires_at - result.issued_at > timedelta(seconds=MAX_TOKEN_TTL):
        raise TokenInvalid(f"the token lives longer than {MAX_TOKEN_TTL} s (exp - iat)")
    return TokenClaims(
        address=str(parse_address(result.address)),
        kid=result.kid,
        audience=audience,
        issued_at=result.issued_at,
        expires_at=result.expires_at,
        jti=result.jti,
    )


def new_opaque_token() -> str:
    """A new opaque bearer token for people and brands: `sbt_` + 32 random bytes, base64url."""
    return OPAQUE_PREFIX + b64url_encode(os.urandom(32))


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: what the gateway stores instead of the token itself."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
