"""The route table: every handler with the facts the OpenAPI document is made from, so the
document and the router are built from one list and cannot drift apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: str  # "none", "envelope", "agent", "token", "agent-or-token"
    body: type[BaseModel] | None = None
    ok: int = 200
    tag: str = "gateway"
    stream: bool = False
    query: tuple[str, ...] = ()
