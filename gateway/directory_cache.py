"""The directory in memory: agents with their keys, brands and their policies, brand agent lists.

Every accepted envelope needs its sender (with keys), its recipient and the brand's policy.
They change rarely, so reading them from the database for each envelope (three or four read
transactions) was most of the acceptance's cost. `CachedDirectory` keeps them in memory.

Staleness, and what bounds it:
- On the replica that makes a change, every write method here drops the whole cache after
  its transaction commits and before it returns, so the change's HTTP answer is sent only
  once this replica has forgotten the old value: a revoked key is refused here at once.
- Every write also publishes `directory.changed` on the bus; every replica subscribes and
  drops its cache when it arrives (core NATS fan-out: about a millisecond on a LAN).
- A short TTL (`SWITCHBOARD_DIRECTORY_CACHE_TTL`, 5 s by default) is the safety net for a
  broadcast lost while a replica was cut off from NATS, and for writes made without the
  gateway (a script on the database).
So a key revoked on replica A is refused on replica B as soon as B hears the broadcast, and
never later than the TTL after the revocation committed. An envelope whose acceptance had
already read the sender before that moment may still be accepted, as it could have been
without any cache.

A load that started before an invalidation is not stored after it (a generation counter),
so a slow read of the old row can never put a revoked key back into the cache.

An entry read in the last fifth of its TTL is served and re-read in the background, so under
steady traffic entries are renewed before they expire and no request waits for the re-read.
Without that, every hot entry (all senders loaded in the same second) expired together and
the requests of that moment each waited for a database read behind a busy event loop, which
made a burst of slow answers every TTL. An entry is still never served later than the TTL
after its read, so the staleness bound above is unchanged.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.bus import Bus, Subscription
from gateway.errors import NotFound
from gateway.store.directory import Directory
from gateway.store.records import AgentRecord, BrandRecord

log = structlog.get_logger(__name__)

CHANGED_SUBJECT = "directory.changed"
_MAX_ENTRIES = 50_000  # per map; a full map is dropped rather than evicted piecemeal
_REFRESH_AHEAD = 0.2  # share of the TTL, at its end, in which a read renews the entry

_T = TypeVar("_T")


class CachedDirectory(Directory):
    """`Directory` with its hot reads (`agent`, `brand`, `brand_agents`) kept in memory.

    Args:
        engine: The database.
        ttl_s: How long an entry may be served without a broadcast; 0 turns caching off.
        bus: Where `directory.changed` is published and heard (None: this process only).
        monotonic: Seconds for the TTL (tests pass a manual one).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl_s: float,
        bus: Bus | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(engine)
        self._ttl = ttl_s
        self._bus = bus
        self._monotonic = monotonic
        self._generation = 0
        self._agents: dict[str, tuple[float, AgentRecord]] = {}
        self._brands: dict[str, tuple[float, BrandRecord]] = {}
        self._brand_agents: dict[str, tuple[float, list[AgentRecord]]] = {}
        self._subscription: Subscription | None = None
        self._refreshing: dict[tuple[int, str], asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Listen for other replicas' changes."""
        if self._bus is not None:
            self._subscription = await self._bus.subscribe(CHANGED_SUBJECT, self._heard)

    async def stop(self) -> None:
        refreshing = list(self._refreshing.values())
        for task in refreshing:
            task.cancel()
        await asyncio.gather(*refreshing, return_exceptions=True)
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None

    def invalidate(self) -> None:
        """Forget everything; loads in flight will not be stored."""
        self._generation += 1
        self._agents.clear()
        self._brands.clear()
        self._brand_agents.clear()

    async def _heard(self, _subject: str, _data: bytes) -> None:
        self.invalidate()

    async def _changed(self, what: str) -> None:
        self.invalidate()
        if self._bus is None:
            return
        try:
            await self._bus.publish(CHANGED_SUBJECT, what.encode())
        except Exception as exc:
            # The TTL still bounds how long other replicas serve the old value.
            log.warning("directory.broadcast_failed", error=repr(exc), changed=what)

    def _fresh(
        self,
        table: dict[str, tuple[float, _T]],
        key: str,
        load: Callable[[], Awaitable[_T | None]],
    ) -> _T | None:
        hit = table.get(key)
        if hit is None:
            return None
        left = hit[0] - self._monotonic()
        if left <= 0:
            return None
        if left < self._ttl * _REFRESH_AHEAD:
            self._refresh(table, key, load)
        return hit[1]

    def _refresh(
        self,
        table: dict[str, tuple[float, _T]],
        key: str,
        load: Callable[[], Awaitable[_T | None]],
    ) -> None:
        """Re-read `key` in the background (once at a time per entry) and keep the result."""
        marker = (id(table), key)
        if marker in self._refreshing:
            return
        generation = self._generation

        async def renew() -> None:
            try:
                value = await load()
            except Exception as exc:
                # The entry still expires on time and the next read after that loads it.
                log.warning("directory.refresh_failed", error=repr(exc), key=key)
                return
            finally:
                self._refreshing.pop(marker, None)
            if value is None:
                if generation == self._generation:
                    table.pop(key, None)
                return
            self._keep(table, key, value, generation)

        self._refreshing[marker] = asyncio.get_running_loop().create_task(renew())

    def _keep(
        self, table: dict[str, tuple[float, _T]], key: str, value: _T, generation: int
    ) -> None:
        if self._ttl <= 0 or generation != self._generation:
            return
        if len(table) >= _MAX_ENTRIES:
            table.clear()
        table[key] = (self._monotonic() + self._ttl, value)

    # Reads ---------------------------------------------------------------------------------

    async def agent(self, address: str) -> AgentRecord | None:
        found = self._fresh(
            self._agents, address, functools.partial(Directory.agent, self, address)
        )
        if found is not None:
            return found
        generation = self._generation
        found = await super().agent(address)
        if found is not None:  # unknown addresses are not remembered: registration is rare
            self._keep(self._agents, address, found, generation)
        return found

    async def brand(self, domain: str) -> BrandRecord | None:
        found = self._fresh(self._brands, domain, functools.partial(Directory.brand, self, domain))
        if found is not None:
            return found
        generation = self._generation
        found = await super().brand(domain)
        if found is not None:
            self._keep(self._brands, domain, found, generation)
        return found

    async def brand_agents(self, domain: str) -> list[AgentRecord]:
        found = self._fresh(
            self._brand_agents, domain, functools.partial(Directory.brand_agents, self, domain)
        )
        if found is not None:
            return list(found)
        generation = self._generation
        agents = await super().brand_agents(domain)
        self._keep(self._brand_agents, domain, list(agents), generation)
        return agents

    # Writes: each drops the cache here and tells the other replicas ------------------------

    async def create_brand(
        self,
        domain: str,
        display_name: str,
        policy: dict[str, Any],
        admin_token_hash: str,
        now: datetime,
    ) -> BrandRecord:
        try:
            return await super().create_brand(domain, display_name, policy, admin_token_hash, now)
        finally:
            await self._changed(domain)

    async def set_policy(self, domain: str, policy: dict[str, Any]) -> BrandRecord:
        try:
            return await super().set_policy(domain, policy)
        finally:
            await self._changed(domain)

    async def register_agent(
        self,
        *,
        address: str,
        kind: str,
        brand: str | None,
        display_name: str,
        description: str,
        skills: Sequence[str],
        endpoint_url: str | None,
        keys: Sequence[tuple[str, dict[str, str]]],
        now: datetime,
        endpoint_max_batch: int = 1,
    ) -> AgentRecord:
        try:
            return await super().register_agent(
                address=address,
                kind=kind,
                brand=brand,
                display_name=display_name,
                description=description,
                skills=skills,
                endpoint_url=endpoint_url,
                keys=keys,
                now=now,
                endpoint_max_batch=endpoint_max_batch,
            )
        finally:
            await self._changed(address)

    async def update_agent(
        self, address: str, changes: dict[str, Any], now: datetime
    ) -> AgentRecord:
        try:
            await super().update_agent(address, changes, now)  # re-reads through the cache
        finally:
            await self._changed(address)
        found = await Directory.agent(self, address)  # so answer with a read of the row
        if found is None:
            raise NotFound(f"no agent {address}", address=address)
        return found

    async def disable_endpoint(self, address: str, note: str, now: datetime) -> None:
        try:
            await super().disable_endpoint(address, note, now)
        finally:
            await self._changed(address)

    async def add_key(self, address: str, kid: str, jwk: dict[str, str], now: datetime) -> bool:
        try:
            return await super().add_key(address, kid, jwk, now)
        finally:
            await self._changed(address)

    async def revoke_key(self, address: str, kid: str, now: datetime) -> str:
        try:
            return await super().revoke_key(address, kid, now)
        finally:
            await self._changed(address)
