"""Shared fixtures: a real gateway on a real port, on a fresh data folder per test.

`gateway` starts the aiohttp application with `aiohttp.test_utils.TestServer` (a real socket,
real HTTP) in each backend: "embedded" (SQLite in a temporary folder, in-process bus) and
"distributed" (a fresh PostgreSQL database and a private NATS subject prefix per test, on the
servers named by SWITCHBOARD_TEST_DATABASE_URL / SWITCHBOARD_TEST_NATS_URL). Distributed tests
skip when those servers are unreachable, and fail instead when CI=true. `Harness` adds the few
steps almost every test needs: a brand with agents, personal agents, clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Overrides, build_app
from gateway.client import AgentClient, StaffClient
from gateway.config import Settings
from gateway.store.database import create_engine, migrate
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
    """Settings for a gateway in this process. Signatures are checked on the event loop
    unless a test asks for workers (`verify_workers`): a worker process per test gateway
    would cost every test its start-up. tests/gateway/test_signature_workers.py runs the
    acceptance rules through workers, and gateways started as processes (`switchboard
    serve` in the CLI and crash tests) use the default, a worker."""
    changes.setdefault("verify_workers", 0)
    return Settings(
        domain="gw.example",
        personal_domain="people.example",
        data_dir=data_dir,
        admin_token=ADMIN_TOKEN,
        **changes,
    )


@pytest.fixture(params=["embedded", pytest.param("distributed", marks=pytest.mark.distributed)])
def backend(request: pytest.FixtureRequest) -> str:
    """Which backend a `gateway` runs on: every test using `gateway` runs on both."""
    return str(request.param)


@pytest.fixture
async def gateway(backend: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """A gateway on the embedded default or on PostgreSQL + NATS, in a temporary folder."""
    if backend == "embedded":
        async with start_gateway(make_settings(tmp_path / "var")) as harness:
            yield harness
        return
    async with provision_distributed() as services:
        settings = make_settings(tmp_path / "var", **services.settings_changes())
        async with start_gateway(settings) as harness:
            yield harness


@dataclass(frozen=True)
class DistributedServices:
    """A private PostgreSQL database and NATS prefix for one test."""

    database_url: str
    nats_url: str
    nats_prefix: str

    def settings_changes(self) -> dict[str, Any]:
        return {
            "database_url": self.database_url,
            "nats_url": self.nats_url,
            "nats_prefix": self.nats_prefix,
        }


TEST_DATABASE_URL = os.environ.get(
    "SWITCHBOARD_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TEST_NATS_URL = os.environ.get("SWITCHBOARD_TEST_NATS_URL", "nats://127.0.0.1:4222")
_HOW_TO_RUN = (
    "start PostgreSQL (database 'test') and nats-server -js on 127.0.0.1, or point"
    " SWITCHBOARD_TEST_DATABASE_URL / SWITCHBOARD_TEST_NATS_URL at them; .ci/run does both"
)


def unavailable(what: str, exc: BaseException) -> NoReturn:
    """Skip a distributed test whose service is down, or fail it in CI (CI=true)."""
    message = f"{what} is unreachable ({exc!r}): {_HOW_TO_RUN}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@asynccontextmanager
async def provision_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database of its own for the block, dropped afterwards."""
    import asyncpg

    name = "sb_" + secrets.token_hex(6)
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(TEST_DATABASE_URL), timeout=3)
    except Exception as exc:
        unavailable(f"PostgreSQL at {TEST_DATABASE_URL}", exc)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    try:
        yield TEST_DATABASE_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(TEST_DATABASE_URL), timeout=3)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.distributed)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated store engine on each backend (a private database on PostgreSQL), for the
    tests of the store itself: the SQLite store runs its hot paths with plain sqlite3
    (`SqliteEngine.write_plain`), PostgreSQL through SQLAlchemy, and both must behave the same."""
    if request.param == "sqlite":
        made = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        await migrate(made)
        yield made
        await made.dispose()
        return
    async with provision_database() as url:
        made = create_engine(url)
        await migrate(made)
        yield made
        await made.dispose()


async def _nats_client() -> Any:
    import nats

    async def quiet(_exc: Exception) -> None:
        return None

    return await asyncio.wait_for(
        nats.connect(TEST_NATS_URL, connect_timeout=2, allow_reconnect=False, error_cb=quiet), 3
    )


@asynccontextmanager
async def provision_nats_prefix() -> AsyncIterator[str]:
    """A NATS subject prefix (and so a work stream) of its own, deleted afterwards."""
    from gateway.bus.nats import stream_name

    try:
        client = await _nats_client()
        try:
            await client.jetstream().account_info()
        finally:
            await client.close()
    except Exception as exc:
        unavailable(f"NATS JetStream at {TEST_NATS_URL}", exc)
    prefix = "sbt" + secrets.token_hex(6)
    try:
        yield prefix
    finally:
        client = await _nats_client()
        try:
            with contextlib.suppress(Exception):  # absent if the test never made it
                await client.jetstream().delete_stream(stream_name(prefix))
        finally:
            await client.close()


@asynccontextmanager
async def provision_distributed() -> AsyncIterator[DistributedServices]:
    """PostgreSQL and NATS for one block, each private to it."""
    async with provision_nats_prefix() as prefix, provision_database() as database_url:
        yield DistributedServices(database_url, TEST_NATS_URL, prefix)


@pytest.fixture
async def distributed() -> AsyncIterator[DistributedServices]:
    """PostgreSQL and NATS for one test, each private to it (for tests that start replicas)."""
    async with provision_distributed() as services:
        yield services


@pytest.fixture
async def nats_prefix() -> AsyncIterator[str]:
    """A NATS prefix of this test's own on the test server."""
    async with provision_nats_prefix() as prefix:
        yield prefix


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
