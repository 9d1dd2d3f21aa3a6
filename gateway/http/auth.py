"""Who is calling: the `Authorization` header turned into a `routing.policy.Principal`.

Two kinds of bearer credential (PROTOCOL section 4):
- opaque tokens `sbt_…` for people and brands (admin, brand admin, operator), stored hashed;
- agent JWTs signed by one of the agent's keys, checked against the keys on record.
No header means the anonymous principal; a header that does not check out is `unauthorized`.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.clock import Clock
from gateway.keyring import KeyCache
from gateway.store.directory import Directory
from identity.errors import TokenInvalid
from identity.tokens import hash_token, peek_agent_token, verify_agent_token
from routing.errors import Unauthorized
from routing.policy import Principal, Role

ANONYMOUS = Principal(Role.ANONYMOUS)


class Authenticator:
    def __init__(
        self,
        *,
        directory: Directory,
        keys: KeyCache,
        clock: Clock,
        audience: str,
        admin_token_hash: str,
    ) -> None:
        self._directory = directory
        self._keys = keys
        self._clock = clock
        self._audience = audience
        self._admin_token_hash = admin_token_hash

    async def principal(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        if header is None:
            return ANONYMOUS
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized(
                "send 'Authorization: Bearer <token>' (an sbt_ token or an agent JWT)"
            )
        if credential.startswith("sbt_"):
            return await self._opaque(credential)
        return await self._agent(credential)

    async def _opaque(self, token: str) -> Principal:
        digest = hash_token(token)
        if hmac.compare_digest(digest, self._admin_token_hash):
            return Principal(Role.ADMIN)
        record = await self._directory.token(digest)
        if record is None:
            raise Unauthorized("this token is not known or was revoked")
        return Principal(Role(record.role), address=record.subject, brand=record.brand)

    async def _agent(self, token: str) -> Principal:
        try:
            claims = peek_agent_token(token)
        except TokenInvalid as exc:
            raise Unauthorized(exc.detail) from exc
        agent = await self._directory.agent(claims.address)
        if agent is None or agent.status != "active":
            raise Unauthorized(f"{claims.address} is not a registered agent")
        try:
            verify_agent_token(token, self._keys.states(agent), self._audience, self._clock.now())
        except TokenInvalid as exc:
            raise Unauthorized(exc.detail) from exc
        role = Role.BRAND_AGENT if agent.kind == "brand" else Role.PERSONAL_AGENT
        return Principal(role, address=agent.address, brand=agent.brand)
