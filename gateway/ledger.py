"""The outcome ledger's hash chain and signatures, as pure functions (no I/O).

Each entry is a JSON object; its `hash` is SHA-256 (hex) over the RFC 8785 canonical bytes of
the entry without `hash` and `sig`, and that object includes `prev_hash`, the hash of the
brand's previous entry (`GENESIS` for the first). `sig` is an Ed25519 signature by the
gateway key over the same canonical bytes, `{"alg": "EdDSA", "kid", "value"}` (base64url).
Changing, dropping, inserting or reordering an entry breaks the chain at that entry, and a
forger without the gateway key cannot re-sign a rewritten chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from identity.b64 import b64url_decode, b64url_encode
from identity.canonical import canonicalize
from identity.errors import IdentityError
from identity.keys import PrivateKey, PublicKey

GENESIS = "0" * 64
FIELDS = (
    "brand",
    "seq",
    "task",
    "agent",
    "outcome",
    "resolved_by",
    "escalated",
    "confirmed",
    "at",
    "prev_hash",
)


def signed_bytes(entry: Mapping[str, Any]) -> bytes:
    """The canonical bytes an entry's hash and signature cover."""
    return canonicalize({name: entry.get(name) for name in FIELDS})


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(signed_bytes(entry)).hexdigest()


def seal(entry: Mapping[str, Any], key: PrivateKey) -> dict[str, Any]:
    """The entry with its `hash` and `sig`."""
    content = signed_bytes(entry)
    return {
        **{name: entry.get(name) for name in FIELDS},
        "hash": hashlib.sha256(content).hexdigest(),
        "sig": {"alg": "EdDSA", "kid": key.kid, "value": b64url_encode(key.sign(content))},
    }


@dataclass(frozen=True, slots=True)
class Broken:
    """The first entry of an export that does not check, and why."""

    index: int
    seq: object
    reason: str


def verify_chain(
    entries: Sequence[Mapping[str, Any]], keys: Mapping[str, PublicKey]
) -> Broken | None:
    """Check every entry's hash, link and signature, in order; None when all hold.

    An export may start mid-ledger (a `since` filter): its first entry's `prev_hash` is then
    taken as given, but seqs must still follow one another without a gap.
    """
    previous: Mapping[str, Any] | None = None
    for index, entry in enumerate(entries):
        seq = entry.get("seq")

        def broken(reason: str, index: int = index, seq: object = seq) -> Broken:
            return Broken(index, seq, reason)

        try:
            content = signed_bytes(entry)
        except IdentityError as exc:
            return broken(f"not canonical JSON: {exc}")
        if hashlib.sha256(content).hexdigest() != entry.get("hash"):
            return broken("its hash does not match its content (the entry was changed)")
        if previous is None:
            if seq == 1 and entry.get("prev_hash") != GENESIS:
                return broken("the first entry of the ledger must link to the genesis hash")
        else:
            if entry.get("prev_hash") != previous.get("hash"):
                return broken("its prev_hash is not the previous entry's hash (chain broken)")
            if not isinstance(seq, int) or seq != previous.get("seq", 0) + 1:
                return broken("its seq does not follow the previous entry's (an entry is missing)")
        sig = entry.get("sig")
        if not isinstance(sig, Mapping) or sig.get("alg") != "EdDSA":
            return broken("it has no EdDSA signature")
        key = keys.get(str(sig.get("kid")))
        if key is None:
            return broken(f"it is signed by key {sig.get('kid')!r}, which the JWKS lacks")
        try:
            signature = b64url_decode(str(sig.get("value")))
        except ValueError:
            return broken("its signature is not base64url")
        if not key.verify(signature, content):
            return broken("its signature does not verify with the gateway key")
        previous = entry
    return None


def jwks_keys(jwks: Mapping[str, Any]) -> dict[str, PublicKey]:
    """The Ed25519 keys of a JWKS, by kid (the RFC 7638 thumbprint)."""
    found: dict[str, PublicKey] = {}
    for jwk in jwks.get("keys", []):
        if not isinstance(jwk, Mapping):
            continue
        try:
            key = PublicKey.from_jwk({k: jwk[k] for k in ("kty", "crv", "x") if k in jwk})
        except IdentityError:
            continue
        found[key.kid] = key
    return found
