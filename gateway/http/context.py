"""What every handler shares: the services (by `web.AppKey`), body parsing into the edge
models, the principal, and JSON responses."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.acceptance import Acceptance
from gateway.bus import Bus
from gateway.clock import Clock
from gateway.config import Settings
from gateway.delivery.worker import OutboxWorker
from gateway.errors import RequestInvalid
from gateway.http.auth import Authenticator
from gateway.inbox import InboxHub
from gateway.keyring import KeyCache
from gateway.metrics import Metrics
from gateway.operators import Desk
from gateway.policies import PolicyCache
from gateway.registry import Registry
from gateway.store.conversations import Conversations
from gateway.store.directory import Directory
from gateway.store.outbox import OutboxStore
from gateway.store.records import dumps
from gateway.timers import TimerRunner
from identity import json_text
from identity.keys import PrivateKey
from routing.language import Language
from routing.policy import Principal

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Services:
    """Everything handlers use, built once by `gateway.app.build_app`."""

    settings: Settings
    clock: Clock
    directory: Directory
    conversations: Conversations
    acceptance: Acceptance
    auth: Authenticator
    keys: KeyCache
    policies: PolicyCache
    registry: Registry
    language: Language
    bus: Bus
    inbox: InboxHub
    metrics: Metrics
    gateway_key: PrivateKey
    ready: Any  # async () -> dict[str, bool]
    desk: Desk
    timers: TimerRunner
    outbox: OutboxStore | None = None
    worker: OutboxWorker | None = None


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def principal(request: web.Request) -> Principal:
    return await services(request).auth.principal(request)


async def read_json(request: web.Request) -> Any:
    """The JSON body, or an `invalid_json` problem saying why it is not JSON, or is JSON the
    gateway does not read (nested too deeply, an integer too long), and where: the same code
    and limits as an envelope's (`identity.json_text`)."""
    return json_text.load(await request.read(), "the body")


async def read_model(request: web.Request, model: type[M]) -> M:
    """Parse the JSON body into `model`, turning every failure into a `schema_invalid` problem
    that names the member and what is wrong with it."""
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise RequestInvalid(f"{where}: {first['msg']}", member=where) from exc


MAX_SEQ = 2**62  # the largest seq a read or a stream may resume after (below SQLite's 2**63)
_WHOLE = re.compile(r"-?[0-9]+")


def query_integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query value within its bounds, parsed as an integer: 1.5, 1_0 or +5
    are refused, and a bound past 2**53 holds exactly (as a float it would round)."""
    return int(bounded(request.query.get(name), name, default, low, high, whole_number))


def query_number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    """The query parameter `name` as a number from `low` to `high` (`default` when absent)."""
    return float(bounded(request.query.get(name), name, default, low, high, float))


def whole_number(raw: str) -> int:
    """Decimal digits, with an optional minus, as an int (`int` alone also takes 1_0, +5,
    spaces and other scripts' digits).

    Raises:
        ValueError: Anything else.
    """
    if _WHOLE.fullmatch(raw) is None:
        raise ValueError(f"not a whole number: {raw!r}")
    return int(raw)


def bounded(
    raw: str | None,
    name: str,
    default: float,
    low: float,
    high: float,
    read: Callable[[str], float],
) -> float:
    """`raw` (a query value or a header named `name`) read by `read`, from `low` to `high`;
    `default` when absent or empty.

    Raises:
        RequestInvalid: It does not read, or is out of bounds; the detail says which.
    """
    if raw is None or raw == "":
        return default
    kind = "a whole number" if read is whole_number else "a number"
    try:
        value = read(raw)
    except ValueError as exc:
        raise RequestInvalid(f"{name} must be {kind}, got {raw!r:.40}", member=name) from exc
    if not low <= value <= high:
        shown = [f"{bound:g}" if isinstance(bound, float) else str(bound) for bound in (low, high)]
        raise RequestInvalid(
            f"{name} must be from {shown[0]} to {shown[1]}, got {raw:.40}", member=name
        )
    return value


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=dumps(value),  # compact JSON, one encoder built once
        content_type="application/json",
        headers=headers,
    )
