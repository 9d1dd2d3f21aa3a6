"""Server-Sent Events, shared by the inbox stream and the operator console: resume from
`Last-Event-ID`, heartbeats while quiet, and a quiet end when the client goes away."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import structlog
from aiohttp import web

from gateway.http.context import MAX_SEQ, bounded, whole_number
from gateway.http.routes import Param

log = structlog.get_logger(__name__)

T = TypeVar("T")

HEARTBEAT_S = 15.0
_HEARTBEAT_MIN_S, _HEARTBEAT_MAX_S = 0.05, 60.0

# The parameters `resume_point` and `heartbeat_interval` read, for the route table.
PARAMS = (
    Param(
        "Last-Event-ID",
        {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
        "The id (seq) of the last event received: the stream resumes after it",
        where="header",
    ),
    Param(
        "after",
        {"type": "integer", "minimum": 0, "maximum": MAX_SEQ, "default": 0},
        "Resume after this seq when Last-Event-ID is not sent",
    ),
    Param(
        "heartbeat",
        {
            "type": "number",
            "minimum": _HEARTBEAT_MIN_S,
            "maximum": _HEARTBEAT_MAX_S,
            "default": HEARTBEAT_S,
        },
        "Seconds of quiet before a heartbeat comment",
    ),
)


def resume_point(request: web.Request) -> int:
    """Where a stream resumes: `Last-Event-ID` (or `?after=`), 0 for the beginning.

    Raises:
        RequestInvalid: Not a seq from 0 to `MAX_SEQ`, naming which one.
    """
    header = request.headers.get("Last-Event-ID")
    if header:
        return int(bounded(header, "Last-Event-ID", 0, 0, MAX_SEQ, whole_number))
    return int(bounded(request.query.get("after"), "after", 0, 0, MAX_SEQ, whole_number))


def heartbeat_interval(request: web.Request) -> float:
    """Seconds of quiet before a heartbeat comment (`?heartbeat=`, 0.05 to 60)."""
    raw = request.query.get("heartbeat")
    return bounded(raw, "heartbeat", HEARTBEAT_S, _HEARTBEAT_MIN_S, _HEARTBEAT_MAX_S, float)


async def stream(
    request: web.Request,
    events: AsyncIterator[T | None],
    frame: Callable[[T], tuple[int, str, Any]],
) -> web.StreamResponse:
    """Write `events` as SSE until the client leaves; `None` from `events` is a heartbeat.
    `frame(event)` gives the event's id (its seq), its event name and its JSON data."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        await response.write(b"retry: 1000\n\n")
        async for event in events:
            if event is None:
                await response.write(b": heartbeat\n\n")
                continue
            seq, name, data = frame(event)
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            await response.write(f"id: {seq}\nevent: {name}\ndata: {text}\n\n".encode())
    except ConnectionResetError:
        log.debug("stream.client_gone", path=request.path)
    return response
