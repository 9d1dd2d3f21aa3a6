"""A brand's notification channels: webhook, slack, email (PROTOCOL section 7)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.endpoints import EndpointGuard
from gateway.errors import NotFound, RequestInvalid
from gateway.http.context import json_response, principal, read_model, services
from gateway.http.routes import Route, Success
from gateway.http.shapes import CHANNEL, CHANNELS
from gateway.notify import EVENT_KINDS
from identity.address import parse_domain
from routing.policy import Action, Target, authorize

_EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


class ChannelCreate(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    kind: Literal["webhook", "slack", "email"]
    url: Annotated[str, Field(min_length=8, max_length=2000)] | None = None
    to: Annotated[str, Field(min_length=3, max_length=320)] | None = None
    events: Annotated[list[str], Field(min_length=1, max_length=len(EVENT_KINDS))] = list(
        EVENT_KINDS
    )


async def _brand(request: web.Request) -> str:
    domain = parse_domain(request.match_info["domain"])
    authorize(await principal(request), Action.MANAGE_CHANNELS, Target(brand=domain))
    if await services(request).directory.brand(domain) is None:
        raise NotFound(f"no brand {domain}", domain=domain)
    return domain


async def add_channel(request: web.Request) -> web.Response:
    domain = await _brand(request)
    svc = services(request)
    body = await read_model(request, ChannelCreate)
    unknown = [kind for kind in body.events if kind not in EVENT_KINDS]
    if unknown:
        raise RequestInvalid(
            f"events: {unknown[0]!r} is not an event; use {', '.join(EVENT_KINDS)}",
            member="events",
        )
    if body.kind == "email":
        if body.to is None or body.url is not None or not _EMAIL.fullmatch(body.to):
            raise RequestInvalid("an email channel takes 'to': one email address", member="to")
        if svc.settings.smtp_url is None:
            raise RequestInvalid(
                "this gateway has no SMTP server: its operator sets SWITCHBOARD_SMTP_URL",
                member="kind",
            )
        target = body.to
    else:
        if body.url is None or body.to is not None:
            raise RequestInvalid(f"a {body.kind} channel takes 'url'", member="url")
        await EndpointGuard(svc.settings.delivery).check_registration(body.url)
        target = body.url
    record = await svc.desk.channels.add(
        channel_id=svc.desk.escalator.new_id("chn"),
        brand=domain,
        kind=body.kind,
        target=target,
        events=list(dict.fromkeys(body.events)),
        now=svc.clock.now(),
    )
    return json_response(record.view(), status=201)


async def list_channels(request: web.Request) -> web.Response:
    domain = await _brand(request)
    found = await services(request).desk.channels.for_brand(domain)
    return json_response({"items": [record.view() for record in found]})


async def delete_channel(request: web.Request) -> web.Response:
    domain = await _brand(request)
    channel_id = request.match_info["id"]
    if not await services(request).desk.channels.remove(domain, channel_id):
        raise NotFound(f"{domain} has no channel {channel_id}", id=channel_id)
    return web.Response(status=204)


ROUTES = (
    Route(
        "POST",
        "/v1/brands/{domain}/channels",
        add_channel,
        "Add a notification channel (webhook, slack, email)",
        "token",
        body=ChannelCreate,
        answers=(Success(201, CHANNEL, "Added: the channel"),),
        tag="channels",
        refusals=("address_invalid", "endpoint_forbidden", "forbidden", "not_found"),
    ),
    Route(
        "GET",
        "/v1/brands/{domain}/channels",
        list_channels,
        "The brand's notification channels",
        "token",
        answers=(Success(200, CHANNELS),),
        tag="channels",
        refusals=("address_invalid", "forbidden", "not_found"),
    ),
    Route(
        "DELETE",
        "/v1/brands/{domain}/channels/{id}",
        delete_channel,
        "Remove a notification channel",
        "token",
        answers=(Success(204, None, "Removed"),),
        tag="channels",
        refusals=("address_invalid", "forbidden", "not_found"),
    ),
)
