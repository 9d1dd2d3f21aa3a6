"""The composition root: `build_app(settings)` wires every port to its adapter.

Nothing else constructs clients or reads configuration. Lifecycles (database, bus, workers)
are aiohttp `cleanup_ctx` entries, so a test server and `switchboard serve` start and stop the
same way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web
from sqlalchemy import text

from gateway.acceptance import Acceptance
from gateway.bus import Bus
from gateway.bus.memory import MemoryBus
from gateway.clock import Clock, SystemClock
from gateway.config import Settings
from gateway.endpoints import EndpointGuard
from gateway.http import agents, brands, directory, inbox, messages, ops, tasks, wellknown
from gateway.http.auth import Authenticator
from gateway.http.context import SERVICES, Services
from gateway.http.middleware import request_context
from gateway.http.ops import ALL_ROUTES
from gateway.http.routes import Route
from gateway.inbox import InboxHub
from gateway.keyring import KeyCache
from gateway.metrics import Metrics
from gateway.policies import PolicyCache
from gateway.registry import Registry
from gateway.store.conversations import Conversations
from gateway.store.database import create_engine, migrate, sqlite_begin_immediate
from gateway.store.directory import Directory
from identity.envelope import MAX_REQUEST_BYTES
from identity.errors import KeyInvalid
from identity.ids import new_id
from identity.keys import PrivateKey
from identity.tokens import hash_token, new_opaque_token
from routing.language import Language

log = structlog.get_logger(__name__)

ROUTES: tuple[Route, ...] = (
    *wellknown.ROUTES,
    *brands.ROUTES,
    *agents.ROUTES,
    *directory.ROUTES,
    *messages.ROUTES,
    *inbox.ROUTES,
    *tasks.ROUTES,
    *ops.ROUTES,
)

KEY_FILE = "gateway_key.jwk"
ADMIN_TOKEN_FILE = "admin_token"


@dataclass(frozen=True)
class Overrides:
    """What tests and the demo may replace: the clock, the language adapter, the bus."""

    clock: Clock | None = None
    language: Language | None = None
    bus_factory: Callable[[], Bus] | None = None
    announce: Callable[[str], None] | None = None


def build_app(settings: Settings, overrides: Overrides | None = None) -> web.Application:
    """The gateway as an aiohttp application; its services exist once it has started."""
    overrides = overrides or Overrides()
    app = web.Application(
        middlewares=[request_context],
        client_max_size=MAX_REQUEST_BYTES + 1,
    )
    app[ALL_ROUTES] = ROUTES
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.handler.__name__)
    app.cleanup_ctx.append(_lifecycle(settings, overrides))
    return app


def _lifecycle(
    settings: Settings, overrides: Overrides
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        clock = overrides.clock or SystemClock()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        gateway_key = _gateway_key(settings.gateway_key_file or settings.data_dir / KEY_FILE)
        admin_hash = _admin_token_hash(settings, overrides.announce or print)

        engine = create_engine(settings.sqlalchemy_url)
        if engine.dialect.name == "sqlite":
            sqlite_begin_immediate(engine)
        await migrate(engine)
        bus = overrides.bus_factory() if overrides.bus_factory else await _bus(settings)
        directory_store = Directory(engine)
        conversations = Conversations(engine, new_id)
        keys = KeyCache()
        policies = PolicyCache(directory_store)
        metrics = Metrics()
        language = overrides.language or _language(settings, metrics)
        inbox_hub = InboxHub(bus, conversations)
        await inbox_hub.start()
        metrics.gauge(
            "switchboard_inbox_items", "Inbox items held for agents.", conversations.inbox_depth
        )
        acceptance = Acceptance(
            directory=directory_store,
            conversations=conversations,
            language=language,
            policies=policies,
            keys=keys,
            bus=bus,
            clock=clock,
            metrics=metrics,
            new_id=new_id,
            rate_per_minute=settings.rate_per_minute,
            personal_to_personal=settings.personal_to_personal,
        )

        async def ready() -> dict[str, bool]:
            checks = {"database": False, "bus": False}
            try:
                async with engine.connect() as conn:
                    await asyncio.wait_for(conn.execute(text("SELECT 1")), 2.0)
                checks["database"] = True
            except Exception:
                log.warning("ready.database_down")
            try:
                checks["bus"] = await asyncio.wait_for(bus.ping(), 2.0)
            except Exception:
                log.warning("ready.bus_down")
            return checks

        app[SERVICES] = Services(
            settings=settings,
            clock=clock,
            directory=directory_store,
            conversations=conversations,
            acceptance=acceptance,
            auth=Authenticator(
                directory=directory_store,
                keys=keys,
                clock=clock,
                audience=settings.domain,
                admin_token_hash=admin_hash,
            ),
            keys=keys,
            policies=policies,
            registry=Registry(
                directory=directory_store,
                clock=clock,
                endpoints=EndpointGuard(settings.delivery),
                gateway_domain=settings.domain,
                personal_domain=settings.personal_domain,
            ),
            language=language,
            bus=bus,
            inbox=inbox_hub,
            metrics=metrics,
            gateway_key=gateway_key,
            ready=ready,
        )
        log.info("gateway.started", domain=settings.domain, database=engine.dialect.name)
        try:
            yield
        finally:
            await inbox_hub.stop()
            await bus.close()
            await engine.dispose()

    return lifecycle


def _gateway_key(path: Path) -> PrivateKey:
    """The gateway's Ed25519 key: loaded from its file, made there on first start. Replicas
    share one key (SWITCHBOARD_GATEWAY_KEY_FILE) and keep data folders of their own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return PrivateKey.load(path)
    key = PrivateKey.generate()
    try:
        key.save(path)
    except KeyInvalid:
        return PrivateKey.load(path)  # another process made it first
    return key


def _admin_token_hash(settings: Settings, announce: Callable[[str], None]) -> str:
    """The admin token's hash: from the setting, or made once and kept in the data folder."""
    if settings.admin_token:
        return hash_token(settings.admin_token)
    path = settings.data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        return hash_token(path.read_text().strip())
    token = new_opaque_token()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    announce(f"switchboard: admin token (shown once; also kept in {path}):\n{token}")
    return hash_token(token)


async def _bus(settings: Settings) -> Bus:
    if settings.nats_url:
        from gateway.bus.nats import NatsBus

        bus: Bus = await NatsBus.connect(settings.nats_url, settings.nats_prefix)
        return bus
    return MemoryBus()


def _language(settings: Settings, metrics: Metrics) -> Language:
    from gateway.language.rules import RulesLanguage

    rules = RulesLanguage()
    if settings.language.kind == "openai":
        from gateway.language.openai import OpenAILanguage

        return OpenAILanguage(
            base_url=settings.language.openai_base_url,
            api_key=settings.language.openai_api_key or "",
            model=settings.language.openai_model,
            fallback=rules,
            timeout=settings.language.openai_timeout_s,
            on_fallback=lambda reason: metrics.count(
                "switchboard_language_fallbacks_total",
                "Language calls answered by the rules after the model failed, by reason.",
                reason=reason,
            ),
        )
    return rules
