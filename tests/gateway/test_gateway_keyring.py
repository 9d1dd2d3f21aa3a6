"""`KeyCache.states`: a sender's keys as the verifier takes them, made once per agent record."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from gateway.keyring import KeyCache
from gateway.store.records import AgentRecord, KeyRecord
from identity.keys import PrivateKey

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _key(status: str = "active") -> KeyRecord:
    public = PrivateKey.generate().public
    return KeyRecord(kid=public.kid, jwk=public.jwk, status=status, created_at=NOW, revoked_at=None)


def _agent(*keys: KeyRecord) -> AgentRecord:
    return AgentRecord(
        address="alice@people.example",
        kind="personal",
        brand=None,
        display_name="Alice",
        description="",
        skills=(),
        endpoint_url=None,
        endpoint_status=None,
        endpoint_note=None,
        endpoint_max_batch=1,
        status="active",
        created_at=NOW,
        updated_at=NOW,
        keys=keys,
    )


def test_the_same_record_gives_the_same_states_and_a_new_record_its_own():
    """Envelopes of one sender reuse its states while the directory hands out the same record;
    a record with a key revoked or added (another record) is read again."""
    cache = KeyCache()
    key = _key()
    agent = _agent(key)
    states = cache.states(agent)
    assert cache.states(agent) is states
    assert not states[key.kid].revoked and states[key.kid].public.kid == key.kid

    revoked = replace(agent, keys=(replace(key, status="revoked"),))
    assert cache.states(revoked)[key.kid].revoked

    added = _key()
    both = replace(agent, keys=(key, added))
    assert set(cache.states(both)) == {key.kid, added.kid}
