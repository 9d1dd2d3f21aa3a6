"""The directory cache forgets a change at once where it is made, on the bus for the others,
and after its TTL when a change bypassed it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.bus.memory import MemoryBus
from gateway.directory_cache import CachedDirectory
from gateway.store.database import create_engine, migrate
from gateway.store.directory import Directory
from identity.keys import PrivateKey

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
ALICE = "alice@people.example"


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite engine with alice registered holding two keys."""
    made = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'dir.db'}")
    await migrate(made)
    keys = [PrivateKey.generate().public for _ in range(2)]
    await Directory(made).register_agent(
        address=ALICE,
        kind="personal",
        brand=None,
        display_name="Alice",
        description="",
        skills=(),
        endpoint_url=None,
        keys=[(key.kid, dict(key.jwk)) for key in keys],
        now=NOW,
    )
    yield made
    await made.dispose()


def _statuses(record: object) -> list[str]:
    return [key.status for key in record.keys]  # type: ignore[attr-defined]


async def test_a_revocation_is_seen_at_once_where_it_is_made(engine):
    """The revoking cache answers with the revoked key right after `revoke_key` returns."""
    cache = CachedDirectory(engine, ttl_s=600)
    before = await cache.agent(ALICE)
    assert before is not None and _statuses(before) == ["active", "active"]
    await cache.revoke_key(ALICE, before.keys[0].kid, NOW)
    after = await cache.agent(ALICE)
    assert after is not None and sorted(_statuses(after)) == ["active", "revoked"]


async def test_a_revocation_reaches_another_cache_through_the_bus(engine):
    """Two caches on one bus (two replicas): B forgets alice when A revokes her key."""
    bus = MemoryBus()
    first = CachedDirectory(engine, ttl_s=600, bus=bus)
    second = CachedDirectory(engine, ttl_s=600, bus=bus)
    await first.start()
    await second.start()
    warm = await second.agent(ALICE)
    assert warm is not None
    await first.revoke_key(ALICE, warm.keys[0].kid, NOW)
    seen = await second.agent(ALICE)
    assert seen is not None and sorted(_statuses(seen)) == ["active", "revoked"]
    await first.stop()
    await second.stop()


async def test_a_change_behind_the_cache_shows_after_the_ttl(engine):
    """A write that bypasses the cache (no broadcast) is served stale until the TTL ends."""
    ticks = Ticks()
    cache = CachedDirectory(engine, ttl_s=5, monotonic=ticks)
    warm = await cache.agent(ALICE)
    assert warm is not None
    await Directory(engine).revoke_key(ALICE, warm.keys[0].kid, NOW)
    ticks.now += 4.9
    stale = await cache.agent(ALICE)
    assert stale is not None and _statuses(stale) == ["active", "active"]
    ticks.now += 0.2
    fresh = await cache.agent(ALICE)
    assert fresh is not None and sorted(_statuses(fresh)) == ["active", "revoked"]


async def test_a_patch_answers_with_the_new_row_and_brand_lists_follow(engine):
    """`update_agent` returns what it wrote, and cached brand lists and brands are dropped."""
    cache = CachedDirectory(engine, ttl_s=600)
    assert await cache.brand_agents("acme.example") == []
    await cache.create_brand("acme.example", "Acme", {}, "hash", NOW)
    key = PrivateKey.generate().public
    await cache.register_agent(
        address="support@acme.example",
        kind="brand",
        brand="acme.example",
        display_name="Support",
        description="old",
        skills=("help",),
        endpoint_url=None,
        keys=[(key.kid, dict(key.jwk))],
        now=NOW,
    )
    assert [a.description for a in await cache.brand_agents("acme.example")] == ["old"]
    changed = await cache.update_agent("support@acme.example", {"description": "new"}, NOW)
    assert changed.description == "new"
    assert [a.description for a in await cache.brand_agents("acme.example")] == ["new"]
    brand = await cache.set_policy("acme.example", {"contact": {"mode": "closed"}})
    cached = await cache.brand("acme.example")
    assert cached is not None and cached.policy_version == brand.policy_version == 2


async def test_an_entry_read_near_its_ttl_end_is_renewed_in_the_background(engine):
    """A read in the TTL's last fifth answers at once and renews the entry behind it."""
    ticks = Ticks()
    cache = CachedDirectory(engine, ttl_s=5, monotonic=ticks)
    warm = await cache.agent(ALICE)
    assert warm is not None
    await Directory(engine).revoke_key(ALICE, warm.keys[0].kid, NOW)
    ticks.now += 4.5
    served = await cache.agent(ALICE)
    assert served is not None and _statuses(served) == ["active", "active"]
    renewed = served
    for _ in range(200):  # the renewal runs on the loop; the clock stays before the TTL's end
        await asyncio.sleep(0.01)
        renewed = await cache.agent(ALICE)
        if renewed is not None and "revoked" in _statuses(renewed):
            break
    assert renewed is not None and sorted(_statuses(renewed)) == ["active", "revoked"]
    # Past the first read's TTL the renewed entry answers, with no read on the way.
    await Directory(engine).revoke_key(ALICE, warm.keys[1].kid, NOW)
    ticks.now += 1.0
    later = await cache.agent(ALICE)
    assert later is not None and sorted(_statuses(later)) == ["active", "revoked"]
    await cache.stop()
