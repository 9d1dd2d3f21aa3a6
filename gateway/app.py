"""The composition root: `build_app(settings)` wires every port to its adapter.

Nothing else constructs clients or reads configuration. Lifecycles (database, bus, workers)
are aiohttp `cleanup_ctx` entries, so a test server and `switchboard serve` start and stop the
same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.acceptance import Acceptance
from gateway.bus import Bus
from gateway.bus.memory import MemoryBus
from gateway.clock import Clock, SystemClock
from gateway.config import DeliverySettings, Settings, SettingUnusable
from gateway.delivery.deliverer import EndpointDeliverer, unreachable_recorder
from gateway.delivery.schedule import Backoff
from gateway.delivery.sender import WebhookSender
from gateway.delivery.worker import OutboxWorker
from gateway.directory_cache import CachedDirectory
from gateway.endpoints import EndpointGuard
from gateway.errors import one_line
from gateway.escalations import Escalator
from gateway.http import agents, brands, directory, inbox, messages, ops, tasks, wellknown
from gateway.http import channels as channel_routes
from gateway.http import escalations as escalation_routes
from gateway.http import operators as operator_routes
from gateway.http import outcomes as outcome_routes
from gateway.http.auth import Authenticator
from gateway.http.context import SERVICES, Services
from gateway.http.middleware import request_context
from gateway.http.ops import ALL_ROUTES
from gateway.http.routes import Route
from gateway.inbox import InboxHub
from gateway.keyring import KeyCache
from gateway.metrics import Metrics
from gateway.notify.console import ConsoleStream
from gateway.notify.handler import KIND as NOTIFICATION
from gateway.notify.handler import NotificationHandler
from gateway.operators import Desk
from gateway.policies import PolicyCache
from gateway.registry import Registry
from gateway.signatures import InlineChecks, SignatureChecks
from gateway.signatures.workers import SignatureWorkers
from gateway.store.channels import Channels
from gateway.store.conversations import Conversations
from gateway.store.database import create_engine, migrate
from gateway.store.escalations import Escalations
from gateway.store.operators import Operators
from gateway.store.outbox import OutboxStore
from gateway.store.outcomes import Outcomes
from gateway.store.timers import Timers
from gateway.timers import TimerRunner
from gateway.unreachable import on_delivery_gave_up, on_endpoint_disabled
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
    *operator_routes.ROUTES,
    *escalation_routes.ROUTES,
    *channel_routes.ROUTES,
    *outcome_routes.ROUTES,
    *ops.ROUTES,
)

KEY_FILE = "gateway_key.jwk"
ADMIN_TOKEN_FILE = "admin_token"
REPLICA_FILE = "replica_id"


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
        # The settings that name a folder or a server are tried before anything is made, so a
        # bad one stops the start (`SettingUnusable`) with no admin token or key left behind.
        prepare_data_dir(settings)
        engine = await open_database(settings)
        bus: Bus | None = None
        try:
            bus = overrides.bus_factory() if overrides.bus_factory else await _bus(settings)
            gateway_key = _gateway_key(settings)
        except BaseException:
            if bus is not None:
                await bus.close()
            await engine.dispose()
            raise
        admin_hash = _admin_token_hash(settings, overrides.announce or print)
        directory_store = CachedDirectory(engine, ttl_s=settings.directory_cache_ttl_s, bus=bus)
        await directory_store.start()
        conversations = Conversations(engine, new_id)
        keys = KeyCache()
        policies = PolicyCache(directory_store)
        metrics = Metrics()
        language = overrides.language or _language(settings, metrics)
        inbox_hub = InboxHub(bus, conversations)
        await inbox_hub.start()
        metrics.gauge(
            "switchboard_inbox_items",
            "Inbox items stored, all agents together, read or not (items are kept after they"
            " are read, so this never goes down).",
            conversations.inbox_depth,
        )
        escalations = Escalations(engine)
        escalator = Escalator(
            settings=settings,
            conversations=conversations,
            escalations=escalations,
            policies=policies,
            language=language,
            gateway_key=gateway_key,
            directory=directory_store,
            new_id=new_id,
        )
        console = ConsoleStream(bus, escalations)
        await console.start()
        desk = Desk(
            escalator=escalator,
            escalations=escalations,
            operators=Operators(engine),
            channels=Channels(engine),
            outcomes=Outcomes(engine),
            directory=directory_store,
            console=console,
            bus=bus,
            clock=clock,
        )
        timer_runner = TimerRunner(
            timers=Timers(engine),
            escalator=escalator,
            directory=directory_store,
            bus=bus,
            clock=clock,
        )
        signatures = _signature_checks(settings, metrics)
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
            escalator=escalator,
            signatures=signatures,
        )

        outbox = OutboxStore(engine)
        sender = WebhookSender(
            timeout_s=settings.delivery.timeout_s, allow=settings.delivery.allow_private
        )
        worker = _outbox_worker(settings.delivery, outbox, bus, clock, settings.data_dir)
        worker.on_gave_up = on_delivery_gave_up(
            escalator, bus, clock, unreachable_recorder(directory_store, outbox, clock)
        )
        metrics.gauge(
            "switchboard_outbox_pending", "Outbox rows not yet settled.", outbox.pending_count
        )
        worker.register(
            "delivery",
            EndpointDeliverer(
                directory=directory_store,
                store=outbox,
                sender=sender,
                key=gateway_key,
                clock=clock,
                accept=acceptance.accept_object,
                on_disabled=on_endpoint_disabled(escalator, bus, clock),
            ),
        )
        worker.register(
            NOTIFICATION,
            NotificationHandler(
                channels=desk.channels,
                key=gateway_key,
                sender=sender,
                clock=clock,
                smtp_url=settings.smtp_url,
                mail_from=f"switchboard@{settings.domain}",
                timeout=settings.delivery.timeout_s,
            ),
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
                reserved=frozenset({settings.gateway_address, settings.admin_address}),
            ),
            language=language,
            bus=bus,
            inbox=inbox_hub,
            metrics=metrics,
            gateway_key=gateway_key,
            ready=ready,
            desk=desk,
            timers=timer_runner,
            outbox=outbox,
            worker=worker,
        )
        timer_loop = (
            asyncio.create_task(timer_runner.run_forever(settings.timer_interval_s))
            if settings.timer_interval_s > 0
            else None
        )
        await worker.start()  # register every outbox kind's handler before this line
        try:
            await signatures.start()
            log.info("gateway.started", domain=settings.domain, database=engine.dialect.name)
            yield
        finally:
            if timer_loop is not None:
                timer_loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timer_loop
            await console.stop()
            await signatures.close()
            await worker.stop()
            await directory_store.stop()
            await sender.close()
            await inbox_hub.stop()
            await bus.close()
            await engine.dispose()

    return lifecycle


def _signature_checks(settings: Settings, metrics: Metrics) -> SignatureChecks:
    """Signature checks in worker processes (started with the gateway's other workers), or
    on the event loop (`gateway.signatures`)."""
    count = settings.verify_worker_count
    if count == 0:
        return InlineChecks()

    def restarted() -> None:
        metrics.count(
            "switchboard_signature_worker_restarts_total",
            "Signature worker processes started again after one was lost.",
        )

    workers = SignatureWorkers(count, on_restart=restarted)

    async def live() -> float:
        return float(workers.live)

    metrics.gauge("switchboard_signature_workers", "Signature worker processes running.", live)
    return workers


def prepare_data_dir(settings: Settings) -> None:
    """Make the data folder if it is missing.

    Raises:
        SettingUnusable: SWITCHBOARD_DATA_DIR cannot be made, or the gateway cannot write in it.
    """
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingUnusable("DATA_DIR", f"cannot create or use {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise SettingUnusable(
            "DATA_DIR", f"cannot create or use {path}: {os.strerror(errno.EACCES)}"
        )


async def open_database(settings: Settings) -> AsyncEngine:
    """The database engine, once a first connection succeeded, with the schema migrated.

    Raises:
        SettingUnusable: no connection to SWITCHBOARD_DATABASE_URL (or, without it, to the
            SQLite file in SWITCHBOARD_DATA_DIR), with the driver's reason.
    """
    name = "DATABASE_URL" if settings.database_url else "DATA_DIR"
    try:
        engine = create_engine(settings.sqlalchemy_url, sqlite_sync=settings.sqlite_sync)
    except (OSError, SQLAlchemyError, ValueError) as exc:
        raise SettingUnusable(
            name, f"cannot use {_database_place(settings)}: {_reason(exc)}"
        ) from exc
    try:
        async with engine.connect():
            pass
    except (OSError, SQLAlchemyError) as exc:
        await engine.dispose()
        raise SettingUnusable(
            name, f"cannot connect to {_database_place(settings)}: {_reason(exc)}"
        ) from exc
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


def _database_place(settings: Settings) -> str:
    """Where the database is, for a message: host:port, or the SQLite file (no password)."""
    try:
        url = make_url(settings.sqlalchemy_url)
    except (SQLAlchemyError, ValueError):
        return "the database"
    if url.get_backend_name() == "sqlite":
        return url.database or "the database"
    return f"{url.host}:{url.port or 5432}"


def _reason(exc: BaseException) -> str:
    """Why a connection or a file failed, on one line: the driver's message, or the system's."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return one_line(exc)


def _gateway_key(settings: Settings) -> PrivateKey:
    """The gateway's Ed25519 key: loaded from its file, made there on first start. Replicas
    share one key (SWITCHBOARD_GATEWAY_KEY_FILE) and keep data folders of their own.

    Raises:
        SettingUnusable: the key file (SWITCHBOARD_GATEWAY_KEY_FILE, else in the data folder)
            cannot be made, read, or holds no private key.
    """
    path = settings.gateway_key_file or settings.data_dir / KEY_FILE
    name = "GATEWAY_KEY_FILE" if settings.gateway_key_file else "DATA_DIR"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            return PrivateKey.load(path)
        key = PrivateKey.generate()
        try:
            key.save(path)
        except KeyInvalid:
            return PrivateKey.load(path)  # another process made it first
        return key
    except OSError as exc:
        raise SettingUnusable(name, f"cannot use {path}: {exc.strerror}") from exc
    except KeyInvalid as exc:
        raise SettingUnusable(name, exc.detail) from exc


def _outbox_worker(
    delivery: DeliverySettings, store: OutboxStore, bus: Bus, clock: Clock, data_dir: Path
) -> OutboxWorker:
    """The outbox worker; its lease owner id is kept in the data folder, so a replica that
    restarts after a crash takes its own leases back at once instead of waiting them out."""
    path = data_dir / REPLICA_FILE
    if not path.exists():
        path.write_text(new_id("rpl") + "\n")
    return OutboxWorker(
        store=store,
        bus=bus,
        clock=clock,
        backoff=Backoff(
            base_s=delivery.backoff_base_s,
            max_s=delivery.backoff_max_s,
            budget_s=delivery.retry_budget_s,
        ),
        owner=path.read_text().strip(),
        concurrency=delivery.concurrency,
        sweep_s=delivery.sweep_s,
        lease_s=delivery.timeout_s * 2 + 30,
    )


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
    """NATS when SWITCHBOARD_NATS_URL is set (`SettingUnusable` naming it if no first connection
    in SWITCHBOARD_NATS_CONNECT_TIMEOUT), else the in-process bus."""
    if settings.nats_url:
        from gateway.bus.nats import BusUnavailable, NatsBus

        try:
            bus: Bus = await NatsBus.connect(
                settings.nats_url,
                settings.nats_prefix,
                first_connect_timeout_s=settings.nats_connect_timeout_s,
            )
        except BusUnavailable as exc:
            raise SettingUnusable("NATS_URL", str(exc)) from exc
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
