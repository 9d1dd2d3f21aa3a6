"""The inbox: poll, long-poll (`wait` up to 30 s) and a resumable Server-Sent Events stream."""

from __future__ import annotations

from aiohttp import web

from gateway.http import sse
from gateway.http.context import (
    MAX_SEQ,
    json_response,
    principal,
    query_integer,
    query_number,
    services,
)
from gateway.http.routes import Param, Route, Success
from gateway.http.shapes import INBOX, INBOX_ITEM, STREAM
from routing.errors import Forbidden, Unauthorized
from routing.policy import Action, Principal, Role, Target, authorize

_MAX_WAIT_S = 30.0
_MAX_LIMIT = 500
_DEFAULT_LIMIT = 100


async def _reader(request: web.Request) -> Principal:
    who = await principal(request)
    if who.role == Role.ANONYMOUS:
        raise Unauthorized("the inbox is read by an agent: send its JWT as the bearer token")
    if who.role not in (Role.PERSONAL_AGENT, Role.BRAND_AGENT):
        # Authenticated, but not an agent: there is no inbox to read (403, not 401, since
        # another credential of the same person would not help).
        raise Forbidden(
            f"a {who.role} has no inbox; inboxes belong to agents, which read them with their"
            " own JWT"
        )
    authorize(who, Action.READ_INBOX, Target(agent=who.address, agent_brand=who.brand))
    return who


async def read_inbox(request: web.Request) -> web.Response:
    who = await _reader(request)
    after = query_integer(request, "after", 0, 0, MAX_SEQ)
    limit = query_integer(request, "limit", _DEFAULT_LIMIT, 1, _MAX_LIMIT)
    wait = query_number(request, "wait", 0, 0, _MAX_WAIT_S)
    assert who.address is not None
    items = await services(request).inbox.read(who.address, after, limit, wait)
    return json_response(
        {"items": [item.view() for item in items], "next": items[-1].seq if items else after}
    )


async def stream_inbox(request: web.Request) -> web.StreamResponse:
    who = await _reader(request)
    assert who.address is not None
    after, heartbeat = sse.resume_point(request), sse.heartbeat_interval(request)
    items = services(request).inbox.follow(who.address, after, heartbeat)
    return await sse.stream(request, items, lambda item: (item.seq, "envelope", item.view()))


ROUTES = (
    Route(
        "GET",
        "/v1/inbox",
        read_inbox,
        "Envelopes for the calling agent, in seq order",
        "agent",
        answers=(Success(200, INBOX),),
        tag="inbox",
        params=(
            Param(
                "after",
                {"type": "integer", "minimum": 0, "maximum": MAX_SEQ, "default": 0},
                "Items after this seq: the `next` of the previous answer",
            ),
            Param(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": _MAX_LIMIT, "default": _DEFAULT_LIMIT},
                "At most this many items",
            ),
            Param(
                "wait",
                {"type": "number", "minimum": 0, "maximum": _MAX_WAIT_S, "default": 0},
                "Seconds to wait for an item when there is none yet (a long poll)",
            ),
        ),
        refusals=("forbidden", "schema_invalid"),
    ),
    Route(
        "GET",
        "/v1/inbox/stream",
        stream_inbox,
        "The inbox as Server-Sent Events; Last-Event-ID resumes",
        "agent",
        answers=(
            Success(
                200,
                STREAM,
                "Events named `envelope`: `id` is the seq, `data` an inbox item",
                media="text/event-stream",
                events=INBOX_ITEM,
            ),
        ),
        tag="inbox",
        params=sse.PARAMS,
        refusals=("forbidden", "schema_invalid"),
    ),
)
