"""Registration: brands, agents and their keys, with the checks the protocol asks for.

Handlers authenticate and parse; this module decides what a registration means (which domain
an address may live under, how a personal agent proves it holds its key, which keys are too
weak to enter) and writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock
from gateway.endpoints import EndpointGuard
from gateway.errors import AddressTaken, NotFound, RequestInvalid
from gateway.store.directory import Directory
from gateway.store.records import AgentRecord, BrandRecord
from identity.address import parse_address, parse_domain
from identity.envelope import KeyState
from identity.errors import KeyInvalid, TokenInvalid
from identity.keys import PublicKey
from identity.tokens import hash_token, new_opaque_token, verify_agent_token
from routing.errors import Forbidden, Unauthorized
from routing.policy import DEFAULT_POLICY, Principal, Role, policy_to_json


def _new_key(jwk: Mapping[str, Any]) -> PublicKey:
    """A key that is to enter the directory: a valid Ed25519 JWK, and not a weak one.

    A small-order key lets anyone make signatures that verify for any message, so an address
    behind it could deny its own envelopes, and others could speak as it. `PublicKey.verify`
    accepts no signature under one anyway; refusing it here tells the registrant at once.

    Raises:
        KeyInvalid: the JWK is malformed, or its key is a small-order point.
    """
    key = PublicKey.from_jwk(jwk)
    if key.small_order:
        raise KeyInvalid(
            f'the key {key.kid} (JWK member "x") is a small-order (weak) Ed25519 point:'
            " anyone can make signatures that verify with it, for any message, so they would"
            " prove nothing. Generate a new key pair (switchboard keys new) and send its public"
            " JWK",
            member="x",
            kid=key.kid,
        )
    return key


@dataclass(frozen=True, slots=True)
class NewAgent:
    address: str
    kind: str
    display_name: str
    description: str
    skills: tuple[str, ...]
    keys: tuple[Mapping[str, Any], ...]
    endpoint_url: str | None
    endpoint_max_batch: int = 1


class Registry:
    def __init__(
        self,
        *,
        directory: Directory,
        clock: Clock,
        endpoints: EndpointGuard,
        gateway_domain: str,
        personal_domain: str,
        reserved: frozenset[str] = frozenset(),
    ) -> None:
        self._directory = directory
        self._clock = clock
        self._endpoints = endpoints
        self._gateway_domain = gateway_domain
        self._personal_domain = personal_domain
        # The addresses the gateway signs as (itself, the admin at an escalation): nobody may
        # register one, which a personal domain equal to the gateway's would otherwise allow.
        self._reserved = reserved

    async def create_brand(self, domain: str, display_name: str) -> tuple[BrandRecord, str]:
        """Create a brand and its first brand-admin token (returned once, stored hashed)."""
        domain = parse_domain(domain)
        if domain in (self._gateway_domain, self._personal_domain):
            raise Forbidden(f"{domain} is the gateway's own domain and cannot be a brand")
        token = new_opaque_token()
        brand = await self._directory.create_brand(
            domain,
            display_name.strip(),
            policy_to_json(DEFAULT_POLICY),
            hash_token(token),
            self._clock.now(),
        )
        return brand, token

    async def register_agent(
        self, principal: Principal, agent: NewAgent, proof: str | None
    ) -> AgentRecord:
        address = parse_address(agent.address)
        keys = [_new_key(jwk) for jwk in agent.keys]
        if len({key.kid for key in keys}) != len(keys):
            raise RequestInvalid("keys: the same key is listed twice", member="keys")
        if agent.kind == "brand":
            # Who asks is checked before the brand is looked up, so callers without the right
            # cannot probe which brands exist.
            if principal.role not in (Role.ADMIN, Role.BRAND_ADMIN) or (
                principal.role == Role.BRAND_ADMIN and principal.brand != address.domain
            ):
                if principal.role == Role.ANONYMOUS:
                    raise Unauthorized("registering a brand agent takes its brand admin's token")
                raise Forbidden(f"only {address.domain}'s brand admin registers its agents")
            brand = await self._directory.brand(address.domain)
            if brand is None:
                raise NotFound(
                    f"no brand {address.domain}: an admin creates it with POST /v1/brands first",
                    domain=address.domain,
                )
            brand_domain: str | None = address.domain
        else:
            if address.domain != self._personal_domain:
                raise Forbidden(
                    f"personal agents live under {self._personal_domain}, not {address.domain}"
                )
            if str(address) in self._reserved:
                raise AddressTaken(
                    f"{address} is the gateway's own address; choose another local part",
                    address=str(address),
                )
            self._check_possession(str(address), keys, proof)
            brand_domain = None
        if agent.endpoint_url is not None:
            await self._endpoints.check_registration(agent.endpoint_url)
        return await self._directory.register_agent(
            address=str(address),
            kind=agent.kind,
            brand=brand_domain,
            display_name=agent.display_name,
            description=agent.description,
            skills=agent.skills,
            endpoint_url=agent.endpoint_url,
            endpoint_max_batch=agent.endpoint_max_batch,
            keys=[(key.kid, key.jwk) for key in keys],
            now=self._clock.now(),
        )

    def _check_possession(self, address: str, keys: Sequence[PublicKey], proof: str | None) -> None:
        if proof is None:
            raise Unauthorized(
                "a personal agent proves it holds its key: send 'Authorization: Bearer <JWT>'"
                " signed by one of the keys you register (iss = sub = your address)"
            )
        states = {key.kid: KeyState(key) for key in keys}
        try:
            claims = verify_agent_token(proof, states, self._gateway_domain, self._clock.now())
        except TokenInvalid as exc:
            raise Unauthorized(f"the proof of possession failed: {exc.detail}") from exc
        if claims.address != address:
            # The key is proven; what it asks for is not its own: forbidden, not unauthorized.
            raise Forbidden(
                f"the proof is for {claims.address}, not {address}: sign the JWT with"
                " iss = sub = the address you register"
            )

    async def update_agent(self, address: str, changes: dict[str, Any]) -> AgentRecord:
        if changes.get("endpoint_url"):
            await self._endpoints.check_registration(changes["endpoint_url"])
        return await self._directory.update_agent(address, changes, self._clock.now())

    async def add_key(self, address: str, jwk: Mapping[str, Any]) -> tuple[AgentRecord, bool]:
        key = _new_key(jwk)
        added = await self._directory.add_key(address, key.kid, key.jwk, self._clock.now())
        agent = await self._directory.agent(address)
        assert agent is not None
        return agent, added

    async def revoke_key(self, address: str, kid: str) -> AgentRecord:
        agent = await self._directory.agent(address)
        if agent is None:
            raise NotFound(f"no agent {address}")
        active = [key for key in agent.keys if key.status == "active"]
        if len(active) == 1 and active[0].kid == kid:
            raise Forbidden(
                "this is the agent's last active key: add the new key first, then revoke this one"
            )
        await self._directory.revoke_key(address, kid, self._clock.now())
        found = await self._directory.agent(address)
        assert found is not None
        return found
