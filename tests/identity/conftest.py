"""Fixtures shared by the identity tests: the protocol's vectors, their keys, a fixed clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from identity.envelope import KeyState
from identity.keys import PrivateKey

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT.parent / "shared" / "vectors" / "envelopes.json"
# The vectors' envelopes were created at 2026-11-26T06:10:00Z; verify half a minute later.
VECTOR_NOW = datetime(2026, 11, 26, 6, 10, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    if not VECTORS.exists():
        pytest.skip(f"shared test vectors not found at {VECTORS}")
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def vector_keys(vectors: dict[str, Any]) -> dict[str, PrivateKey]:
    return {
        name: PrivateKey.from_seed(bytes.fromhex(entry["seed_hex"]))
        for name, entry in vectors["keys"].items()
    }


@pytest.fixture()
def now() -> datetime:
    """Half a minute after the vectors' (and `unsigned`'s) created_at."""
    return VECTOR_NOW


@pytest.fixture()
def alice() -> PrivateKey:
    return PrivateKey.from_seed(bytes(range(32)))


@pytest.fixture()
def alice_keys(alice: PrivateKey) -> dict[str, KeyState]:
    return {alice.kid: KeyState(alice.public)}


@pytest.fixture()
def unsigned() -> dict[str, Any]:
    return {
        "v": "switchboard/1",
        "id": "01JDZ4Q6W5M8X0B7K3N2R9T1VE",
        "from": "alice@people.example",
        "to": "sonos.example",
        "task": None,
        "reply_to": None,
        "act": "say",
        "created_at": "2026-11-26T06:10:00.000Z",
        "expires_at": None,
        "body": {"text": "My speaker's light is flashing orange.", "parts": []},
        "meta": {},
    }
