"""Public keys as the verifier wants them, decoded once per key rather than once per request."""

from __future__ import annotations

from gateway.store.records import AgentRecord
from identity.envelope import KeyState
from identity.keys import PublicKey

_MAX_CACHED = 50_000


class KeyCache:
    """Maps stored JWKs to `PublicKey` objects, keyed by thumbprint (which fixes the key)."""

    def __init__(self) -> None:
        self._keys: dict[str, PublicKey] = {}

    def public(self, kid: str, jwk: dict[str, str]) -> PublicKey:
        key = self._keys.get(kid)
        if key is None:
            key = PublicKey.from_jwk(jwk)
            if len(self._keys) >= _MAX_CACHED:
                self._keys.clear()
            self._keys[kid] = key
        return key

    def states(self, agent: AgentRecord) -> dict[str, KeyState]:
        """The agent's keys, revoked ones included, as `identity.envelope.verify` takes them."""
        return {
            key.kid: KeyState(self.public(key.kid, key.jwk), revoked=key.status == "revoked")
            for key in agent.keys
        }
