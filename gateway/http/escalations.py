"""The escalation queue and its work: list, read, follow live, claim, reply, resolve, hand back.

Brand staff read their brand's escalations; operators work them under their own address, and
the admin under `admin@` the gateway's domain (the gateway signs for both). An escalation of
another brand is reported missing, as tasks are.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import RequestInvalid
from gateway.http import sse
from gateway.http.context import json_response, principal, read_model, services
from gateway.http.routes import Param, Route, Success
from gateway.http.shapes import (
    CONSOLE_EVENT,
    ESCALATION,
    ESCALATION_DETAIL,
    ESCALATIONS,
    STREAM,
    one_of,
)
from gateway.operators import Reply
from gateway.store.escalations import EscalationRecord
from routing.claims import EscalationState
from routing.errors import Forbidden
from routing.policy import Action, Principal, Role, Target, authorize

_Strict = ConfigDict(strict=True, frozen=True, extra="forbid")
_Text = Annotated[str, Field(max_length=32 * 1024)]


class ReplyBody(BaseModel):
    model_config = _Strict

    text: Annotated[str, Field(min_length=1, max_length=32 * 1024)]
    act: Literal["say", "ask"] = "say"
    parts: Annotated[list[dict[str, Any]], Field(max_length=16)] = []


class ResolveBody(BaseModel):
    model_config = _Strict

    text: _Text = ""


class HandbackBody(BaseModel):
    model_config = _Strict

    note: _Text = ""


async def _reader(request: web.Request) -> Principal:
    who = await principal(request)
    authorize(who, Action.READ_ESCALATIONS, Target(brand=who.brand))
    return who


async def _escalation(request: web.Request, action: Action) -> tuple[Principal, EscalationRecord]:
    who = await principal(request)
    authorize(who, Action.READ_ESCALATIONS, Target(brand=who.brand))
    desk = services(request).desk
    scope = None if who.role == Role.ADMIN else who.brand
    found = await desk.escalation(request.match_info["id"], scope)
    authorize(who, action, Target(brand=found.brand))
    return who, found


async def _worker(request: web.Request) -> tuple[str, EscalationRecord]:
    """Who works the escalation, by the address the gateway signs for: an operator's own, or
    for the admin (who may do everything, PROTOCOL section 4) `admin@` the gateway's domain."""
    who, found = await _escalation(request, Action.WORK_ESCALATION)
    if who.role == Role.ADMIN:
        return services(request).settings.admin_address, found
    if who.role != Role.OPERATOR or who.address is None:
        raise Forbidden(
            "only operators and the admin work escalations (the gateway signs for their "
            "address); add an operator with POST /v1/brands/{domain}/operators",
            role=str(who.role),
        )
    return who.address, found


async def list_escalations(request: web.Request) -> web.Response:
    who = await _reader(request)
    state = request.query.get("state") or None
    if state is not None and state not in {s.value for s in EscalationState}:
        raise RequestInvalid(
            f"state must be one of {', '.join(s.value for s in EscalationState)}", member="state"
        )
    brand = None if who.role == Role.ADMIN else who.brand
    found = await services(request).desk.escalations.for_brand(brand, state)
    return json_response({"items": [record.view() for record in found]})


async def get_escalation(request: web.Request) -> web.Response:
    _, found = await _escalation(request, Action.READ_ESCALATIONS)
    return json_response(await services(request).desk.detail(found))


async def claim(request: web.Request) -> web.Response:
    operator, found = await _worker(request)
    return json_response((await services(request).desk.claim(found.id, operator)).view())


async def release(request: web.Request) -> web.Response:
    operator, found = await _worker(request)
    return json_response((await services(request).desk.release(found.id, operator)).view())


async def reply(request: web.Request) -> web.Response:
    operator, found = await _worker(request)
    body = await read_model(request, ReplyBody)
    said = Reply(body.text, body.act, tuple(body.parts))
    return json_response((await services(request).desk.reply(found.id, operator, said)).view())


async def resolve(request: web.Request) -> web.Response:
    operator, found = await _worker(request)
    body = await read_model(request, ResolveBody)
    return json_response(
        (await services(request).desk.resolve(found.id, operator, body.text)).view()
    )


async def handback(request: web.Request) -> web.Response:
    operator, found = await _worker(request)
    body = await read_model(request, HandbackBody)
    return json_response(
        (await services(request).desk.handback(found.id, operator, body.note)).view()
    )


async def stream(request: web.Request) -> web.StreamResponse:
    who = await _reader(request)
    if who.brand is None:
        raise RequestInvalid("the live queue is per brand: use a brand admin or operator token")
    after, heartbeat = sse.resume_point(request), sse.heartbeat_interval(request)
    events = services(request).desk.console.follow(who.brand, after, heartbeat)
    return await sse.stream(request, events, lambda event: (event.seq, event.kind, event.view()))


def _work(path: str, handler: Any, summary: str, body: type[BaseModel] | None = None) -> Route:
    return Route(
        "POST",
        f"/v1/escalations/{{id}}/{path}",
        handler,
        summary,
        "token",
        body=body,
        answers=(Success(200, ESCALATION, "Done: the escalation as it is now"),),
        tag="escalations",
        refusals=(
            "forbidden",
            "not_found",
            "escalation_conflict",
            "invalid_transition",
            "task_closed",
        ),
    )


ROUTES = (
    Route(
        "GET",
        "/v1/escalations",
        list_escalations,
        "The brand's escalation queue",
        "token",
        answers=(Success(200, ESCALATIONS),),
        tag="escalations",
        params=(Param("state", one_of(s.value for s in EscalationState), "Only this state"),),
        refusals=("forbidden", "schema_invalid"),
    ),
    Route(
        "GET",
        "/v1/escalations/stream",
        stream,
        "The live queue as Server-Sent Events; Last-Event-ID resumes",
        "token",
        answers=(
            Success(
                200,
                STREAM,
                "Queue events: `id` is the seq, `event` the kind",
                media="text/event-stream",
                events=CONSOLE_EVENT,
            ),
        ),
        tag="escalations",
        params=sse.PARAMS,
        refusals=("forbidden", "schema_invalid"),
    ),
    Route(
        "GET",
        "/v1/escalations/{id}",
        get_escalation,
        "One escalation with its summary and transcript",
        "token",
        answers=(Success(200, ESCALATION_DETAIL),),
        tag="escalations",
        refusals=("forbidden", "not_found"),
    ),
    _work("claim", claim, "Claim an escalation (exclusive)"),
    _work("release", release, "Release your claim"),
    _work("reply", reply, "Answer the initiator as yourself (the gateway signs)", ReplyBody),
    _work("resolve", resolve, "Complete the task, resolved by a human", ResolveBody),
    _work("handback", handback, "Return control to the brand agent", HandbackBody),
)
