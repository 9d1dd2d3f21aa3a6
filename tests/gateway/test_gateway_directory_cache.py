"""The directory cache forgets a change at once where it is made, on the bus for the others,
and after its TTL when a change bypassed it; requests that miss one entry together share one
read of it (single flight)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.bus.memory import MemoryBus
from gateway.directory_cache import CachedDirectory
from gateway.store.database import create_engine, migrate
from gateway.store.directory import Directory
from identity.keys import PrivateKey, PublicKey
from tests.conftest import provision_database

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
ALICE = "alice@people.example"
ACME = "acme.example"
SUPPORT = "support@acme.example"


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
    await _register(Directory(made), ALICE, keys)
    yield made
    await made.dispose()


async def _register(
    directory: Directory, address: str, keys: list[PublicKey], *, brand: str | None = None
) -> Any:
    """Register an agent holding `keys` (a brand's, described "old" with the skill "help",
    when `brand` is given); the record the directory answers with."""
    return await directory.register_agent(
        address=address,
        kind="brand" if brand else "personal",
        brand=brand,
        display_name=address.split("@")[0].title(),
        description="old" if brand else "",
        skills=("help",) if brand else (),
        endpoint_url=None,
        keys=[(key.kid, dict(key.jwk)) for key in keys],
        now=NOW,
    )


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
    await _register(cache, SUPPORT, [PrivateKey.generate().public], brand=ACME)
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


# Single flight ---------------------------------------------------------------------------

_READ = re.compile(r"\bFROM (agents|brands)\b")  # one per directory read (agent_keys aside)


@dataclass
class Reads:
    """The directory reads that reached the database, and an event set at the first."""

    statements: list[str] = field(default_factory=list)
    begun: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, statement: str) -> None:
        if _READ.search(statement):
            self.statements.append(statement)
            self.begun.set()


@contextlib.contextmanager
def _reads(engine: AsyncEngine) -> Iterator[Reads]:
    """Note each directory read while the block runs, wherever the engine runs it: through
    SQLAlchemy (`brand`, `brand_agents`) or on its plain read connection (`agent`)."""
    reads = Reads()
    direct = engine._direct  # type: ignore[attr-defined]
    assert direct is not None, "the fixture's registration opened the plain read connection"

    def cursor(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        reads.saw(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", cursor)
    direct.set_trace_callback(reads.saw)
    try:
        yield reads
    finally:
        direct.set_trace_callback(None)
        event.remove(engine.sync_engine, "before_cursor_execute", cursor)


@contextlib.contextmanager
def _unretrieved() -> Iterator[list[dict[str, Any]]]:
    """Collect what the event loop reports (such as "Task exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        yield reported
        gc.collect()  # a task that dies with an unretrieved exception reports it here
    finally:
        loop.set_exception_handler(None)


def _sql(engine: AsyncEngine, statement: str, *args: Any) -> None:
    """One statement committed on a connection of its own, behind the cache's back."""
    with contextlib.closing(sqlite3.connect(engine.url.database)) as db:
        db.execute(statement, args)
        db.commit()


async def _acme(engine: AsyncEngine) -> None:
    """The brand acme.example with one brand agent, support, described as "old"."""
    directory = Directory(engine)
    await directory.create_brand(ACME, "Acme", {}, "hash", NOW)
    await _register(directory, SUPPORT, [PrivateKey.generate().public], brand=ACME)


def _descriptions(agents: list[Any]) -> list[str]:
    return [agent.description for agent in agents]


@pytest.mark.parametrize(
    ("read", "key"), [("agent", ALICE), ("brand", ACME), ("brand_agents", ACME)]
)
async def test_concurrent_misses_of_one_entry_share_one_read(engine, read, key):
    """50 requests that miss the same entry together, on a cold cache and again once it has
    expired, make one database read, and all of them get the same answer. (Before single
    flight, `brand` and `brand_agents` made 50 reads each; `agent` on SQLite reads without
    leaving the event loop's thread, so its misses could not overlap there.)"""
    await _acme(engine)
    ticks = Ticks()
    cache = CachedDirectory(engine, ttl_s=5, monotonic=ticks)
    for _ in ("cold", "expired"):
        with _reads(engine) as reads:
            answers = await asyncio.gather(*(getattr(cache, read)(key) for _ in range(50)))
        assert len(reads.statements) == 1
        assert answers[0] and all(answer == answers[0] for answer in answers)
        ticks.now += 5.1
    await cache.stop()


async def test_misses_of_an_unknown_address_share_a_read_that_is_not_kept(engine):
    """Concurrent misses of an address nobody has share one read of it; the next miss reads
    again (registration is rare and must show at once)."""
    cache = CachedDirectory(engine, ttl_s=600)
    for _ in range(2):
        with _reads(engine) as reads:
            answers = await asyncio.gather(*(cache.agent("nobody@x.example") for _ in range(20)))
        assert answers == [None] * 20 and len(reads.statements) == 1


async def test_each_request_gets_its_own_list(engine):
    """The requests that shared a load of a brand's agents each hold a list of their own:
    emptying one changes neither the others nor what the cache serves next."""
    await _acme(engine)
    cache = CachedDirectory(engine, ttl_s=600)
    lists = await asyncio.gather(*(cache.brand_agents(ACME) for _ in range(3)))
    assert len({id(agents) for agents in lists}) == 3
    lists[0].clear()
    assert _descriptions(lists[1]) == _descriptions(lists[2]) == ["old"]
    assert _descriptions(await cache.brand_agents(ACME)) == ["old"]


async def test_a_request_after_an_invalidation_does_not_join_the_load_before_it(engine):
    """A load of acme's agents has read when the cache is invalidated and the row changes:
    a request made after that, with the first load still under way, loads again and sees
    the change. The first request gets what its own load read, which is not kept."""
    await _acme(engine)
    cache = CachedDirectory(engine, ttl_s=600)
    changed = asyncio.Event()

    def change(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if _READ.search(statement) and not changed.is_set():  # the first load's read is done
            _sql(engine, "UPDATE agents SET description = 'new' WHERE address = ?", SUPPORT)
            cache.invalidate()
            changed.set()

    event.listen(engine.sync_engine, "after_cursor_execute", change)
    try:
        first = asyncio.create_task(cache.brand_agents(ACME))
        await changed.wait()
        assert not first.done()
        after = await cache.brand_agents(ACME)
        before = await first
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", change)
    assert _descriptions(before) == ["old"]
    assert _descriptions(after) == ["new"]
    assert _descriptions(await cache.brand_agents(ACME)) == ["new"]


async def test_a_request_that_goes_away_leaves_the_load_to_the_others(engine):
    """The request that started a load is cancelled (its client left) while the database
    reads: the five that joined it still get the answer, from that one read."""
    await _acme(engine)
    cache = CachedDirectory(engine, ttl_s=600)
    with _reads(engine) as reads:
        first = asyncio.create_task(cache.brand_agents(ACME))
        others = [asyncio.create_task(cache.brand_agents(ACME)) for _ in range(5)]
        await reads.begun.wait()
        first.cancel()
        answers = await asyncio.gather(*others)
    assert first.cancelled()
    assert [_descriptions(agents) for agents in answers] == [["old"]] * 5
    assert len(reads.statements) == 1


async def test_a_failed_load_reaches_every_request_and_is_not_kept(engine):
    """With the brands table gone, ten concurrent misses share one failed read and each gets
    its error; nothing is kept, so the first request once the table is back reads again.
    A failure nobody waits for any more is not reported as never retrieved."""
    await _acme(engine)
    cache = CachedDirectory(engine, ttl_s=600)
    _sql(engine, "ALTER TABLE brands RENAME TO brands_away")
    with _unretrieved() as reported:
        with _reads(engine) as reads:
            answers = await asyncio.gather(
                *(cache.brand(ACME) for _ in range(10)), return_exceptions=True
            )
        assert len(reads.statements) == 1
        assert isinstance(answers[0], OperationalError) and "no such table" in str(answers[0])
        assert all(answer is answers[0] for answer in answers)
        with _reads(engine) as reads:
            alone = asyncio.create_task(cache.brand(ACME))
            await reads.begun.wait()
            alone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await alone
            with pytest.raises(OperationalError):  # it joins that load or follows it
                await cache.brand(ACME)
        del alone, answers
    assert reported == []
    _sql(engine, "ALTER TABLE brands_away RENAME TO brands")
    with _reads(engine) as reads:
        brand = await cache.brand(ACME)
    assert brand is not None and brand.domain == ACME and len(reads.statements) == 1


async def test_a_failed_renewal_is_logged_and_the_entry_still_expires(engine):
    """A background renewal that fails is logged (not left unretrieved); the entry is served
    until its TTL ends, and the read after that, with the database back, loads it."""
    await _acme(engine)
    ticks = Ticks()
    cache = CachedDirectory(engine, ttl_s=5, monotonic=ticks)
    assert await cache.brand(ACME) is not None
    _sql(engine, "ALTER TABLE brands RENAME TO brands_away")
    ticks.now += 4.5
    with _unretrieved() as reported, structlog.testing.capture_logs() as logs:
        with _reads(engine) as reads:
            for _ in range(200):  # each renewal starts once the one before it has ended
                assert await cache.brand(ACME) is not None
                if len(reads.statements) >= 2:
                    break
                await asyncio.sleep(0.01)
        assert len(reads.statements) >= 2
        await cache.stop()
    assert reported == []
    assert any(log["event"] == "directory.load_failed" for log in logs)
    _sql(engine, "ALTER TABLE brands_away RENAME TO brands")
    ticks.now += 1.0
    with _reads(engine) as reads:
        assert await cache.brand(ACME) is not None
    assert len(reads.statements) == 1


async def test_stop_ends_the_loads_in_flight(engine):
    """`stop` cancels a load under way and waits for it: its request ends cancelled."""
    await _acme(engine)
    cache = CachedDirectory(engine, ttl_s=600)
    with _reads(engine) as reads:
        waiting = asyncio.create_task(cache.brand_agents(ACME))
        await reads.begun.wait()
        await cache.stop()
    with pytest.raises(asyncio.CancelledError):
        await waiting


@pytest.mark.distributed
async def test_a_registration_answers_with_its_row_past_a_lookup_in_flight():
    """On PostgreSQL a lookup of an address can be on its way back with "not there" while the
    same replica registers that address. The registration answers with the row it committed,
    read from the database, rather than joining that lookup: joined, about half of these
    registrations failed with a 500 though the agent was stored (and a retry met 409)."""
    async with provision_database() as url:
        made = create_engine(url)
        try:
            await migrate(made)
            cache = CachedDirectory(made, ttl_s=5)

            async def look_up(address: str) -> None:
                for _ in range(30):
                    await cache.agent(address)

            for number in range(40):
                address = f"racer{number}@people.example"
                key = PrivateKey.generate().public
                looking = asyncio.create_task(look_up(address))
                await asyncio.sleep(0.001)  # the lookups are reading
                record = await _register(cache, address, [key])
                assert record.address == address and [k.kid for k in record.keys] == [key.kid]
                await looking
                assert await cache.agent(address) == record
            await cache.stop()
        finally:
            await made.dispose()
