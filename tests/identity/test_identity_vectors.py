"""The shared protocol vectors, reproduced byte for byte."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from identity.b64 import b64url_encode
from identity.canonical import canonicalize
from identity.envelope import KeyState, parse, parse_json, sign, signing_input, verify
from identity.errors import IdentityError
from identity.keys import PrivateKey, PublicKey, thumbprint
from identity.webhook import sign_webhook, verify_webhook


def _keys_of(key: PrivateKey) -> dict[str, KeyState]:
    return {key.kid: KeyState(key.public)}


def test_every_key_reproduces_jwk_and_kid(vectors: dict[str, Any]) -> None:
    """Each seed yields the vector's public JWK x, thumbprint input and kid."""
    for name, entry in vectors["keys"].items():
        key = PrivateKey.from_seed(bytes.fromhex(entry["seed_hex"]))
        assert key.public.jwk == entry["public_jwk"], name
        assert key.kid == entry["kid"], name
        assert thumbprint(entry["public_jwk"]) == entry["kid"], name
        assert PublicKey.from_jwk(entry["public_jwk"]).kid == entry["kid"], name
        x = entry["public_jwk"]["x"]
        assert entry["thumbprint_input"] == f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}', name
        digest = hashlib.sha256(entry["thumbprint_input"].encode()).digest()
        assert b64url_encode(digest) == entry["kid"], name


def test_every_envelope_canonical_digest_and_signature(
    vectors: dict[str, Any], vector_keys: dict[str, PrivateKey]
) -> None:
    """Canonical bytes, their SHA-256 and the signature equal the vector exactly."""
    for case in vectors["envelopes"]:
        canonical = canonicalize(case["unsigned"])
        assert canonical == case["canonical_utf8"].encode("utf-8"), case["name"]
        assert hashlib.sha256(canonical).hexdigest() == case["canonical_sha256_hex"], case["name"]
        assert signing_input(case["signed"]) == canonical, case["name"]
        signed = sign(case["unsigned"], vector_keys[case["signer"]])
        assert signed["sig"] == case["signed"]["sig"], case["name"]
        assert signed == case["signed"], case["name"]


def test_every_signed_envelope_verifies_from_its_wire_bytes(
    vectors: dict[str, Any], vector_keys: dict[str, PrivateKey], now: datetime
) -> None:
    """Each signed vector, serialised and parsed again, verifies with its signer's key."""
    for case in vectors["envelopes"]:
        body = json.dumps(case["signed"], ensure_ascii=False).encode("utf-8")
        envelope = parse(parse_json(body))
        assert envelope.canonical == case["canonical_utf8"].encode("utf-8")
        assert envelope.digest == case["canonical_sha256_hex"]
        verify(envelope, _keys_of(vector_keys[case["signer"]]), now)


def test_must_refuse_cases(
    vectors: dict[str, Any], vector_keys: dict[str, PrivateKey], now: datetime
) -> None:
    """Each must_refuse envelope fails with the named code, verified with alice's keys only."""
    assert vectors["must_refuse"]
    outcomes = {}
    for case in vectors["must_refuse"]:
        try:
            envelope = parse(parse_json(json.dumps(case["envelope"]).encode()))
            verify(envelope, _keys_of(vector_keys["alice"]), now)
        except IdentityError as exc:
            outcomes[case["name"]] = exc.code
        else:
            outcomes[case["name"]] = "accepted"
    assert outcomes == {case["name"]: case["expect"] for case in vectors["must_refuse"]}


def test_must_accept_text_cases(
    vectors: dict[str, Any], vector_keys: dict[str, PrivateKey], now: datetime
) -> None:
    """Reordered and pretty-printed texts of a signed envelope still verify."""
    assert vectors["must_accept_text"]
    for case in vectors["must_accept_text"]:
        envelope = parse(parse_json(case["json_text"].encode("utf-8")))
        verify(envelope, _keys_of(vector_keys["alice"]), now)
        assert case["expect"] == "valid"


def test_webhook_signature_vector(
    vectors: dict[str, Any], vector_keys: dict[str, PrivateKey]
) -> None:
    """The v1a webhook signature is reproduced and verifies."""
    hook = vectors["webhook"]
    key = vector_keys[hook["signer"]]
    timestamp = int(hook["webhook_timestamp"])
    body = hook["body"].encode("utf-8")
    header = sign_webhook(key, hook["webhook_id"], timestamp, body)
    assert header == hook["webhook_signature"]
    assert verify_webhook([key.public], hook["webhook_id"], timestamp, body, header)
    assert not verify_webhook([key.public], hook["webhook_id"], timestamp, body + b" ", header)
