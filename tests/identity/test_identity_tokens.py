"""Agent JWTs and opaque tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from identity.b64 import b64url_decode, b64url_encode
from identity.envelope import KeyState
from identity.errors import AddressInvalid, TokenInvalid
from identity.keys import PrivateKey
from identity.tokens import (
    hash_token,
    issue_agent_token,
    new_opaque_token,
    peek_agent_token,
    verify_agent_token,
)

KEY = PrivateKey.from_seed(bytes(range(32)))
KEYS = {KEY.kid: KeyState(KEY.public)}
NOW = datetime(2026, 11, 26, 6, 10, tzinfo=UTC)
AUDIENCE = "gw.example"


def _token(**claims: Any) -> str:
    return issue_agent_token(KEY, "alice@people.example", AUDIENCE, NOW, **claims)


def _forge(header: dict[str, Any], claims: dict[str, Any], key: PrivateKey = KEY) -> str:
    """A token with arbitrary header and claims, correctly signed by `key`."""
    head = b64url_encode(json.dumps(header).encode())
    body = b64url_encode(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url_encode(key.sign(f'{head}.{body}'.encode()))}"


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    return json.loads(b64url_decode(head)), json.loads(b64url_decode(body))


def test_issue_verify_round_trip() -> None:
    """An issued token carries the protocol's header and claims and verifies."""
    token = _token(ttl=120, jti="abc")
    header, claims = _parts(token)
    assert header == {"alg": "EdDSA", "kid": KEY.kid, "typ": "JWT"}
    assert claims["iss"] == claims["sub"] == "alice@people.example"
    assert claims["aud"] == AUDIENCE and claims["exp"] - claims["iat"] == 120
    result = verify_agent_token(token, KEYS, AUDIENCE, NOW + timedelta(seconds=60))
    assert (result.address, result.kid, result.audience, result.jti) == (
        "alice@people.example",
        KEY.kid,
        AUDIENCE,
        "abc",
    )
    assert result.expires_at - result.issued_at == timedelta(seconds=120)


def test_peek_reads_without_keys() -> None:
    """peek returns the claims of an unverified token, and refuses a malformed one."""
    claims = peek_agent_token(_token())
    assert claims.address == "alice@people.example" and claims.kid == KEY.kid
    with pytest.raises(TokenInvalid, match="3 dot-separated parts"):
        peek_agent_token("abc")


def test_issue_refuses_bad_input() -> None:
    """A bad address or a ttl over 300 s is refused at issue time."""
    with pytest.raises(AddressInvalid):
        issue_agent_token(KEY, "alice", AUDIENCE, NOW)
    with pytest.raises(ValueError, match="ttl"):
        _token(ttl=301)


def _good_claims(**changes: Any) -> dict[str, Any]:
    iat = int(NOW.timestamp())
    claims = {
        "iss": "alice@people.example",
        "sub": "alice@people.example",
        "aud": AUDIENCE,
        "iat": iat,
        "exp": iat + 300,
        "jti": "j1",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


HEADER = {"alg": "EdDSA", "kid": KEY.kid, "typ": "JWT"}
_iat = int(NOW.timestamp())

REFUSALS: list[tuple[str, str, str]] = [
    ("empty", "", "is empty"),
    ("two parts", "a.b", "3 dot-separated parts"),
    ("junk", "a.b.c", "header is not base64url-encoded JSON"),
    ("alg none", _forge({**HEADER, "alg": "none"}, _good_claims()), '"alg" must be "EdDSA"'),
    ("alg HS256", _forge({**HEADER, "alg": "HS256"}, _good_claims()), '"alg" must be "EdDSA"'),
    ("typ", _forge({**HEADER, "typ": "at+jwt"}, _good_claims()), '"typ" must be "JWT"'),
    ("crit", _forge({**HEADER, "crit": ["x"]}, _good_claims()), '"crit"'),
    ("no kid", _forge({"alg": "EdDSA", "typ": "JWT"}, _good_claims()), '"kid"'),
    ("sub differs", _forge(HEADER, _good_claims(sub="bob@people.example")), '"iss" and "sub"'),
    ("bad iss", _forge(HEADER, _good_claims(iss="alice", sub="alice")), "not an address"),
    ("no jti", _forge(HEADER, _good_claims(jti="")), '"jti"'),
    ("aud type", _forge(HEADER, _good_claims(aud=5)), '"aud" must be'),
    ("iat type", _forge(HEADER, _good_claims(iat="now")), '"iat" must be a number'),
    (
        "wrong signer",
        _forge(HEADER, _good_claims(), PrivateKey.from_seed(bytes(32))),
        "does not verify",
    ),
    ("other aud", _forge(HEADER, _good_claims(aud="evil.example")), "not this gateway"),
    ("aud list", _forge(HEADER, _good_claims(aud=["a.example"])), "not this gateway"),
    (
        "future iat",
        _forge(HEADER, _good_claims(iat=_iat + 301, exp=_iat + 400)),
        "issued in the future",
    ),
    ("expired", _forge(HEADER, _good_claims(iat=_iat - 400, exp=_iat)), "expired at"),
    ("too long", _forge(HEADER, _good_claims(exp=_iat + 301)), "longer than 300 s"),
    ("huge", "a" * 9000, "longer than 8192"),
]


@pytest.mark.parametrize(
    ("token", "problem"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals_are_unauthorized_with_a_clear_detail(token: str, problem: str) -> None:
    """Every broken rule gives code unauthorized and a detail naming the rule."""
    with pytest.raises(TokenInvalid) as caught:
        verify_agent_token(token, KEYS, AUDIENCE, NOW)
    assert caught.value.code == "unauthorized"
    assert problem in caught.value.detail


def test_unknown_and_revoked_keys() -> None:
    """A kid outside the keys, or a revoked one, is refused."""
    token = _token()
    with pytest.raises(TokenInvalid, match=r"is not a key of alice@people\.example"):
        verify_agent_token(token, {}, AUDIENCE, NOW)
    with pytest.raises(TokenInvalid, match="is revoked"):
        verify_agent_token(token, {KEY.kid: KeyState(KEY.public, True)}, AUDIENCE, NOW)


def test_audience_list_containing_ours_passes() -> None:
    """aud may be a list that includes this gateway's domain."""
    token = _forge(HEADER, _good_claims(aud=["other.example", AUDIENCE]))
    assert verify_agent_token(token, KEYS, AUDIENCE, NOW).audience == AUDIENCE


def test_tampered_claims_fail() -> None:
    """Swapping the claims of a signed token breaks its signature."""
    head, _, signature = _token().split(".")
    other = b64url_encode(json.dumps(_good_claims(jti="other")).encode())
    with pytest.raises(TokenInvalid, match="signature does not verify"):
        verify_agent_token(f"{head}.{other}.{signature}", KEYS, AUDIENCE, NOW)


def test_opaque_tokens() -> None:
    """Opaque tokens are sbt_ + 43 characters, unique, and hash to stable SHA-256 hex."""
    first, second = new_opaque_token(), new_opaque_token()
    assert first.startswith("sbt_") and len(first) == 4 + 43 and first != second
    assert len(b64url_decode(first[4:])) == 32
    assert hash_token(first) == hash_token(first) != hash_token(second)
    assert len(hash_token(first)) == 64
