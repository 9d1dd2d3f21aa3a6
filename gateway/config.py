"""Configuration: one frozen `Settings` object, read from the environment in this module only.

Every setting has a name `SWITCHBOARD_*`, a default that works on a laptop, and a check that
stops the start with one line naming the setting and the problem (`SettingsError`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from identity.address import parse_domain
from identity.errors import IdentityError

ENV_PREFIX = "SWITCHBOARD_"
PORTS = range(1, 65536)  # what SWITCHBOARD_PORT and `serve --port` accept
OPENAI_API_KEY = f"{ENV_PREFIX}OPENAI_API_KEY"  # also where `switchboard language` looks


class SettingsError(Exception):
    """A setting is missing or wrong; the message names it and says what is expected."""


class SettingUnusable(SettingsError):
    """A setting reads well but what it names cannot be used at start: a folder that cannot be
    made, a server that does not answer. `problem` says what failed and why, on one line."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{ENV_PREFIX}{name}: {problem}")
        self.setting = ENV_PREFIX + name
        self.problem = problem


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How the gateway delivers to agent endpoints (PROTOCOL section 6)."""

    timeout_s: float = 15.0
    retry_budget_s: float = 24 * 3600.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 600.0
    allow_private: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    concurrency: int = 64  # endpoints delivered to at once (one in flight per endpoint)
    sweep_s: float = 1.0  # how often the worker looks for due retries and leftover rows


@dataclass(frozen=True, slots=True)
class LanguageSettings:
    """Which language adapter answers the `Language` port."""

    kind: Literal["rules", "openai"] = "rules"
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway reads from its environment, validated once at start."""

    domain: str = "gateway.localhost"
    personal_domain: str = "people.localhost"
    data_dir: Path = Path("./var")
    gateway_key_file: Path | None = None  # shared by replicas; default: in the data folder
    database_url: str | None = None
    nats_url: str | None = None
    nats_prefix: str = "switchboard"
    nats_connect_timeout_s: float = 15.0  # how long a starting replica waits for NATS
    admin_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8420
    log_format: Literal["json", "console"] = "console"
    log_level: str = "info"
    sqlite_sync: Literal["normal", "full"] = "normal"  # SQLite's synchronous: see README
    rate_per_minute: int = 120
    personal_to_personal: bool = False
    smtp_url: str | None = None
    public_url: str | None = None
    timer_interval_s: float = 1.0
    directory_cache_ttl_s: float = 5.0  # safety net; the bus invalidates at once
    verify_workers: int | None = None  # signature worker processes; None: `verify_worker_count`
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    language: LanguageSettings = field(default_factory=LanguageSettings)

    @property
    def gateway_address(self) -> str:
        """The gateway's own address, which signs status envelopes."""
        return f"gateway@{self.domain}"

    @property
    def admin_address(self) -> str:
        """The address the gateway admin works escalations under (claims, replies)."""
        return f"admin@{self.domain}"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to the SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'switchboard.db').resolve()}"

    @property
    def base_url(self) -> str:
        """Where people reach this gateway (for links in notifications)."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def verify_worker_count(self) -> int:
        """How many worker processes check signatures (0: the event loop does). Unset: one
        on a machine with two cores or more. One is enough: it checks about 9,000 envelopes
        a second, three times what the event loop does with the rest of an envelope."""
        if self.verify_workers is not None:
            return self.verify_workers
        return 1 if _cores() >= 2 else 0

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some settings replaced (command-line flags, tests)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check every `SWITCHBOARD_*` variable; raise `SettingsError` on the first bad one."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name)
        return value.strip() if value is not None and value.strip() != "" else None

    defaults = Settings()
    return Settings(
        domain=_domain("DOMAIN", get("DOMAIN") or defaults.domain),
        personal_domain=_domain(
            "PERSONAL_DOMAIN", get("PERSONAL_DOMAIN") or defaults.personal_domain
        ),
        data_dir=Path(get("DATA_DIR") or str(defaults.data_dir)),
        gateway_key_file=Path(key_file) if (key_file := get("GATEWAY_KEY_FILE")) else None,
        database_url=_database_url(get("DATABASE_URL")),
        nats_url=_nats_url(get("NATS_URL")),
        nats_prefix=_nats_prefix(get("NATS_PREFIX") or defaults.nats_prefix),
        nats_connect_timeout_s=_float(
            "NATS_CONNECT_TIMEOUT", get("NATS_CONNECT_TIMEOUT"), 15.0, 0.1, 600.0
        ),
        admin_token=_admin_token(get("ADMIN_TOKEN")),
        host=get("HOST") or defaults.host,
        port=_int("PORT", get("PORT"), defaults.port, PORTS[0], PORTS[-1]),
        log_format=_choice("LOG_FORMAT", get("LOG_FORMAT"), ("console", "json"), "console"),  # type: ignore[arg-type]
        log_level=_choice(
            "LOG_LEVEL", get("LOG_LEVEL"), ("debug", "info", "warning", "error"), "info"
        ),
        sqlite_sync=_choice("SQLITE_SYNC", get("SQLITE_SYNC"), ("normal", "full"), "normal"),  # type: ignore[arg-type]
        rate_per_minute=_int("RATE_PER_MINUTE", get("RATE_PER_MINUTE"), 120, 1, 1_000_000),
        personal_to_personal=_bool("PERSONAL_TO_PERSONAL", get("PERSONAL_TO_PERSONAL")),
        smtp_url=get("SMTP_URL"),
        public_url=get("PUBLIC_URL"),
        timer_interval_s=_float("TIMER_INTERVAL", get("TIMER_INTERVAL"), 1.0, 0.0, 3600.0),
        directory_cache_ttl_s=_float(
            "DIRECTORY_CACHE_TTL", get("DIRECTORY_CACHE_TTL"), 5.0, 0.0, 3600.0
        ),
        verify_workers=(
            _int("VERIFY_WORKERS", workers, 0, 0, 64)
            if (workers := get("VERIFY_WORKERS")) is not None
            else None
        ),
        delivery=DeliverySettings(
            timeout_s=_float("DELIVERY_TIMEOUT", get("DELIVERY_TIMEOUT"), 15.0, 0.1, 300.0),
            retry_budget_s=_float(
                "DELIVERY_RETRY_BUDGET", get("DELIVERY_RETRY_BUDGET"), 86400.0, 1.0, 30 * 86400.0
            ),
            allow_private=_networks("ALLOW_PRIVATE_ENDPOINTS", get("ALLOW_PRIVATE_ENDPOINTS")),
            backoff_base_s=_float(
                "DELIVERY_BACKOFF_BASE", get("DELIVERY_BACKOFF_BASE"), 1.0, 0.001, 3600.0
            ),
            backoff_max_s=_float(
                "DELIVERY_BACKOFF_MAX", get("DELIVERY_BACKOFF_MAX"), 600.0, 0.001, 86400.0
            ),
            concurrency=_int("DELIVERY_CONCURRENCY", get("DELIVERY_CONCURRENCY"), 64, 1, 10_000),
            sweep_s=_float("DELIVERY_SWEEP", get("DELIVERY_SWEEP"), 1.0, 0.01, 600.0),
        ),
        language=LanguageSettings(
            kind=_choice("LANGUAGE", get("LANGUAGE"), ("rules", "openai"), "rules"),  # type: ignore[arg-type]
            openai_base_url=get("OPENAI_BASE_URL"),
            openai_api_key=get("OPENAI_API_KEY"),
            openai_model=get("OPENAI_MODEL") or "gpt-4o-mini",
            openai_timeout_s=_float("OPENAI_TIMEOUT", get("OPENAI_TIMEOUT"), 10.0, 0.1, 120.0),
        ),
    )


def secret(variable: str, environ: Mapping[str, str] | None = None) -> str:
    """The environment variable a command was told holds a secret (`switchboard language
    --api-key-env`, by default SWITCHBOARD_OPENAI_API_KEY), as it is set; empty when unset."""
    env = os.environ if environ is None else environ
    return env.get(variable, "")


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _fail(name: str, problem: str) -> SettingsError:
    return SettingsError(f"{ENV_PREFIX}{name}: {problem}")


def _domain(name: str, value: str) -> str:
    try:
        return parse_domain(value)
    except IdentityError as exc:
        raise _fail(name, exc.detail) from exc


def _int(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise _fail(name, f"expected a whole number, got {value!r}") from exc
    if not low <= number <= high:
        raise _fail(name, f"expected a number from {low} to {high}, got {number}")
    return number


def _float(name: str, value: str | None, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError as exc:
        raise _fail(name, f"expected a number of seconds, got {value!r}") from exc
    if not low <= number <= high:
        raise _fail(name, f"expected a number from {low} to {high}, got {number}")
    return number


def _bool(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise _fail(name, f"expected true or false, got {value!r}")


def _choice(name: str, value: str | None, allowed: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value.lower() not in allowed:
        raise _fail(name, f"expected one of {', '.join(allowed)}, got {value!r}")
    return value.lower()


def _database_url(value: str | None) -> str | None:
    if value is None:
        return None
    if value.startswith("postgres://") or value.startswith("postgresql://"):
        raise _fail(
            "DATABASE_URL",
            "use the asyncpg driver: postgresql+asyncpg://user@host:port/database",
        )
    if not (value.startswith("postgresql+asyncpg://") or value.startswith("sqlite+aiosqlite://")):
        raise _fail(
            "DATABASE_URL",
            f"expected postgresql+asyncpg://… or sqlite+aiosqlite:///path, got {value!r}",
        )
    return value


def _nats_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not (value.startswith("nats://") or value.startswith("tls://")):
        raise _fail("NATS_URL", f"expected nats://host:port, got {value!r}")
    return value


def _nats_prefix(value: str) -> str:
    # The prefix is the first subject token and, uppercased, the JetStream stream's name, so
    # two deployments (or two test runs) can share one NATS server without seeing each other.
    if re.fullmatch(r"[A-Za-z0-9_-]{1,32}", value) is None:
        raise _fail("NATS_PREFIX", f"expected 1-32 letters, digits, '_' or '-', got {value!r}")
    return value


def _admin_token(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith("sbt_") or len(value) < 20:
        raise _fail("ADMIN_TOKEN", "expected a token starting with sbt_ and at least 20 characters")
    return value


def _networks(
    name: str, value: str | None
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if value is None:
        return ()
    networks = []
    for item in value.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise _fail(name, f"{item!r} is not a CIDR such as 127.0.0.0/8") from exc
    return tuple(networks)
