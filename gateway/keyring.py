"""Public keys as the verifier wants them, decoded once per key rather than once per request."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.store.records import AgentRecord
from identity.envelope import KeyState
from identity.keys import PublicKey

_MAX_CACHED = 50_000


class KeyCache:
    """Maps stored JWKs to `PublicKey` objects, keyed by thumbprint (which fixes the key)."""

    def __init__(self) -> None:
        self._keys: dict[str, PublicKey] = {}
        # Address -> (the agent record, its keys as `states` gives them): a sender's next
        # envelope usually comes with the same record from the directory's cache.
        self._states: dict[str, tuple[AgentRecord, dict[str, KeyState]]] = {}

    def public(self, kid: str, jwk: dict[str, str]) -> PublicKey:
        key = self._keys.get(kid)
        if key is None:
            key = PublicKey.from_jwk(jwk)
            if len(self._keys) >= _MAX_CACHED:
                self._keys.clear()
            self._keys[kid] = key
        return key

    def states(self, agent: AgentRecord) -> Mapping[str, KeyState]:
        """The agent's keys, revoked ones included, as `identity.envelope.verify` takes them.

        Made once per agent record: records are immutable, and a change of keys (an added or
        revoked key) comes as another record, whose states are made anew."""
        known = self._states.get(agent.address)
        if known is not None and known[0] is agent:
            return known[1]
        states = {
            key.kid: KeyState(self.public(key.kid, key.jwk), revoked=key.status == "revoked")
            for key in agent.keys
        }
        if len(self._states) >= _MAX_CACHED:
            self._states.clear()
        self._states[agent.address] = (agent, states)
        return states
