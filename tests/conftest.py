"""Shared fixtures: a real gateway on a real port, on a fresh data folder per test.

`gateway` starts the aiohttp application with `aiohttp.test_utils.TestServer` (a real socket,
real HTTP), on SQLite in a temporary folder. `Harness` adds the few steps almost every test
needs: a brand with agents, personal agents, clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import Overrides, build_app
from gateway.client import AgentClient, StaffClient
from gateway.config import Settings
from identity.keys import PrivateKey

ADMIN_TOKEN = "sbt_test_admin_token_0123456789abcdef"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@dataclass
class Harness:
    """A running gateway and the clients a test makes against it."""

    server: TestServer
    settings: Settings
    session: aiohttp.ClientSession
    app: Any
    made: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def services(self) -> Any:
        from gateway.http.context import SERVICES

        return self.app[SERVICES]

    def admin(self) -> StaffClient:
        return StaffClient(self.url, ADMIN_TOKEN, session=self.session)

    def staff(self, token: str) -> StaffClient:
        return StaffClient(self.url, token, session=self.session)

    def agent(self, address: str, key: PrivateKey | None = None) -> AgentClient:
        return AgentClient(
            self.url,
            address,
            key or PrivateKey.generate(),
            audience=self.settings.domain,
            session=self.session,
        )

    async def brand(
        self, domain: str, agents: Sequence[tuple[str, str, Sequence[str]]] = ()
    ) -> tuple[StaffClient, dict[str, AgentClient]]:
        """Create a brand and register its agents: (local part, description, skills)."""
        created = await self.admin().create_brand(domain, domain.split(".")[0].title())
        staff = self.staff(created["token"])
        clients = {}
        for local, description, skills in agents:
            client = self.agent(f"{local}@{domain}")
            await staff.register_brand_agent(
                client.address, client.key, description=description, skills=skills
            )
            clients[local] = client
        return staff, clients

    async def person(self, local: str) -> AgentClient:
        client = self.agent(f"{local}@{self.settings.personal_domain}")
        await client.register_personal(display_name=local.title())
        return client


def make_settings(data_dir: Path, **changes: Any) -> Settings:
    return Settings(
        domain="gw.example",
        personal_domain="people.example",
        data_dir=data_dir,
        admin_token=ADMIN_TOKEN,
        **changes,
    )


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Harness]:
    """A gateway on the embedded default (SQLite in a temporary folder, in-process bus)."""
    async with start_gateway(make_settings(tmp_path / "var")) as harness:
        yield harness


class start_gateway:
    """Start a gateway for the length of an `async with` block."""

    def __init__(self, settings: Settings, overrides: Overrides | None = None) -> None:
        self.settings = settings
        self.overrides = overrides or Overrides(announce=lambda _text: None)

    async def __aenter__(self) -> Harness:
        self.app = build_app(self.settings, self.overrides)
        self.server = TestServer(self.app, host="127.0.0.1")
        await self.server.start_server()
        self.session = aiohttp.ClientSession()
        return Harness(self.server, self.settings, self.session, self.app)

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await self.server.close()


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or a skip that says why it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared folder lies beside the repository in CI")
    return path
