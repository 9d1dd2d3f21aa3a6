"""SWITCHBOARD_SQLITE_SYNC: how long an accepted envelope's COMMIT waits on the embedded
default (SQLite's `synchronous`), read by the settings and applied by the running gateway."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.config import SettingsError, load_settings
from tests.conftest import make_settings, start_gateway


def test_the_sqlite_sync_level_is_read_and_checked():
    """`normal` unless set; `full` when asked; anything else stops the start by name."""
    assert load_settings({}).sqlite_sync == "normal"
    assert load_settings({"SWITCHBOARD_SQLITE_SYNC": "full"}).sqlite_sync == "full"
    with pytest.raises(SettingsError, match="SWITCHBOARD_SQLITE_SYNC"):
        load_settings({"SWITCHBOARD_SQLITE_SYNC": "off"})


@pytest.mark.parametrize(("sync", "level"), [("normal", 1), ("full", 2)])
async def test_a_gateway_commits_with_its_sync_level(tmp_path: Path, sync: str, level: int):
    """A gateway started with a level accepts envelopes on connections that use it."""
    async with start_gateway(make_settings(tmp_path / "var", sqlite_sync=sync)) as gateway:
        await gateway.brand("acme.example", [("support", "Support", ["help"])])
        alice = await gateway.person("alice")
        assert (await alice.send("acme.example", "My speaker is silent"))["duplicate"] is False
        engine = gateway.services.conversations._engine

        def level_of(db: sqlite3.Connection) -> int:
            return int(db.execute("PRAGMA synchronous").fetchone()[0])

        assert await engine.read_plain(level_of) == level
