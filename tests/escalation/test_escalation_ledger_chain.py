"""The ledger's hash chain as pure functions: any sealed chain verifies, and any single
change is reported at exactly the entry that was changed."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ledger import GENESIS, jwks_keys, seal, verify_chain
from identity.keys import PrivateKey

KEY = PrivateKey.from_seed(bytes(range(32)))
KEYS = {KEY.kid: KEY.public}

_text = st.text(min_size=1, max_size=20)
_facts = st.fixed_dictionaries(
    {
        "task": _text,
        "agent": _text,
        "outcome": st.sampled_from(["resolved", "canceled", "failed", "abandoned", "reopened"]),
        "resolved_by": st.sampled_from([None, "agent", "human"]),
        "escalated": st.booleans(),
        "confirmed": st.booleans(),
        "at": _text,
    }
)


def _chain(facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    previous = GENESIS
    for seq, fact in enumerate(facts, start=1):
        entry = seal({"brand": "acme.example", "seq": seq, **fact, "prev_hash": previous}, KEY)
        previous = entry["hash"]
        entries.append(entry)
    return entries


@settings(max_examples=60, deadline=None)
@given(st.lists(_facts, min_size=1, max_size=6))
def test_a_sealed_chain_verifies(facts):
    """Whatever the entries hold, the chain the gateway seals verifies."""
    assert verify_chain(_chain(facts), KEYS) is None


@settings(max_examples=80, deadline=None)
@given(st.lists(_facts, min_size=1, max_size=6), st.data())
def test_one_changed_field_is_caught_at_its_entry(facts, data):
    """Changing one field of one entry is reported at that entry's position."""
    entries = _chain(facts)
    index = data.draw(st.integers(0, len(entries) - 1))
    field = data.draw(st.sampled_from(["task", "agent", "outcome", "escalated", "at"]))
    before = entries[index][field]
    after = data.draw(
        st.booleans() if isinstance(before, bool) else _text.filter(lambda v: v != before)
    )
    if after == before:
        after = not before
    entries[index][field] = after
    broken = verify_chain(entries, KEYS)
    assert broken is not None and broken.index == index and broken.seq == index + 1


def test_a_foreign_key_is_refused_and_jwks_keys_reads_a_well_known_jwks():
    """Entries signed by a key outside the JWKS fail; jwks_keys keeps Ed25519 keys by kid."""
    entries = _chain(
        [
            {
                "task": "t",
                "agent": "a",
                "outcome": "resolved",
                "resolved_by": "agent",
                "escalated": False,
                "confirmed": False,
                "at": "now",
            }
        ]
    )
    other = PrivateKey.generate()
    jwks = {"keys": [{**other.public.jwk, "kid": other.kid}, {"kty": "RSA", "n": "x"}]}
    assert list(jwks_keys(jwks)) == [other.kid]
    broken = verify_chain(entries, jwks_keys(jwks))
    assert broken is not None and "JWKS lacks" in broken.reason
