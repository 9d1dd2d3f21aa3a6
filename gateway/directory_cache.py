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

Single flight: the requests that miss one entry at the same time (none yet, expired, or just
dropped) share one load, and so does a miss that arrives while the entry is being re-read in
the background. Before, each ran its own read: after an idle spell or an invalidation, the 33
requests in flight for a brand's agent list made 33 reads of it within 0.18 s. A load is
shared only within its generation: a request that arrives after an invalidation starts a new
load, so it never gets a value read before the change. A load runs as a task of its own,
awaited through a shield: a request that goes away does not cancel it for the others. A
load's failure reaches each of its requests and is not kept; the next miss loads again.
A write reads its row back from the database itself (`Directory`), not through this cache: a
lookup begun before the write committed may still be on its way with the old answer, and
the write must not join it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.bus import Bus, Subscription
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
        # Loads in flight, by (table, key, generation): misses and renewals of one entry share one.
        self._loading: dict[tuple[int, str, int], asyncio.Task[Any]] = {}

    async def start(self) -> None:
        """Listen for other replicas' changes."""
        if self._bus is not None:
            self._subscription = await self._bus.subscribe(CHANGED_SUBJECT, self._heard)

    async def stop(self) -> None:
        loading = list(self._loading.values())
        for task in loading:
            task.cancel()
        await asyncio.gather(*loading, return_exceptions=True)
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
            self._load(table, key, load)  # renewed in the background; this read is served
        return hit[1]

    async def _loaded(
        self,
        table: dict[str, tuple[float, _T]],
        key: str,
        load: Callable[[], Awaitable[_T | None]],
    ) -> _T | None:
        """A miss: the result of the load of `key` in flight, or of one started here."""
        if self._ttl <= 0:
            return await load()
        loading = self._load(table, key, load)
        # Shielded: a caller that goes away (its client did) does not cancel the others' load.
        return await asyncio.shield(loading)

    def _load(
        self,
        table: dict[str, tuple[float, _T]],
        key: str,
        load: Callable[[], Awaitable[_T | None]],
    ) -> asyncio.Task[_T | None]:
        """The load of `key` in flight in this generation, or a new one: it reads, keeps what
        it found (unless an invalidation came meanwhile) and answers everyone who joined."""
        flight = (id(table), key, self._generation)
        task = self._loading.get(flight)
        if task is None or task.done():  # a finished load leaves the map a moment later
            # Shared by every reader that joins it, or a renewal in the background: in a
            # context of its own, not with the log ids of the request that started it.
            context = contextvars.Context()
            task = asyncio.get_running_loop().create_task(
                self._read_and_keep(table, key, load, self._generation), context=context
            )
            task.add_done_callback(functools.partial(self._landed, flight), context=context)
            self._loading[flight] = task
        return task

    async def _read_and_keep(
        self,
        table: dict[str, tuple[float, _T]],
        key: str,
        load: Callable[[], Awaitable[_T | None]],
        generation: int,
    ) -> _T | None:
        value = await load()
        if value is None:  # gone (or never there): not remembered
            if generation == self._generation:
                table.pop(key, None)
        else:
            self._keep(table, key, value, generation)
        return value

    def _landed(self, flight: tuple[int, str, int], task: asyncio.Task[Any]) -> None:
        """A load ended: the next miss starts another. Its failure was raised to each caller
        that waited for it; it is retrieved and logged here too, as a background renewal may
        have had none (the entry still expires on time and the next read loads it)."""
        del self._loading[flight]
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("directory.load_failed", error=repr(error), key=flight[1])

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
        load = functools.partial(Directory.agent, self, address)
        found = self._fresh(self._agents, address, load)
        if found is not None:
            return found
        # Unknown addresses are not remembered (registration is rare), though concurrent
        # misses of one still share its load.
        return await self._loaded(self._agents, address, load)

    async def brand(self, domain: str) -> BrandRecord | None:
        load = functools.partial(Directory.brand, self, domain)
        found = self._fresh(self._brands, domain, load)
        if found is not None:
            return found
        return await self._loaded(self._brands, domain, load)

    async def brand_agents(self, domain: str) -> list[AgentRecord]:
        load = functools.partial(Directory.brand_agents, self, domain)
        found = self._fresh(self._brand_agents, domain, load)
        if found is None:
            found = await self._loaded(self._brand_agents, domain, load)
        return list(found or ())  # each caller its own list: the kept one is never handed out

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
            return await super().update_agent(address, changes, now)
        finally:
            await self._changed(address)

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
