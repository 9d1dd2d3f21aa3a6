"""The route table: every handler with the facts the OpenAPI document is made from, so the
document and the router are built from one list and cannot drift apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Shape:
    """A named JSON Schema (2020-12, OpenAPI 3.1's dialect): a component of the document."""

    name: str
    schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Success:
    """One success status of a route and what its body is (`shape` None: no body)."""

    status: int
    shape: Shape | None
    description: str = "OK"
    media: str = "application/json"
    events: Shape | None = None  # Server-Sent Events: the shape of each event's `data`


@dataclass(frozen=True, slots=True)
class Param:
    """A query or header parameter, with its JSON Schema (type, bounds, enum, default)."""

    name: str
    schema: Mapping[str, Any]
    description: str = ""
    where: Literal["query", "header"] = "query"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: str  # "none", "envelope", "agent", "token", "agent-or-token"
    body: type[BaseModel] | Shape | None = None
    answers: tuple[Success, ...] = ()
    tag: str = "gateway"
    params: tuple[Param, ...] = ()
    refusals: tuple[str, ...] = ()  # the protocol codes of the problems it may answer
