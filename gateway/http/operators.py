"""A brand's operators: added by its admins (token shown once), listed for them."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import NotFound
from gateway.http.context import json_response, principal, read_model, services
from gateway.http.routes import Route, Success
from gateway.http.shapes import OPERATOR_CREATED, OPERATORS
from identity.address import parse_domain
from routing.policy import Action, Target, authorize


class OperatorCreate(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    handle: Annotated[str, Field(min_length=1, max_length=64)]
    display_name: Annotated[str, Field(max_length=200)] = ""
    email: Annotated[str, Field(min_length=3, max_length=320)] | None = None
    skills: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=50)
    ] = []


async def _brand(request: web.Request) -> str:
    domain = parse_domain(request.match_info["domain"])
    authorize(await principal(request), Action.MANAGE_OPERATORS, Target(brand=domain))
    if await services(request).directory.brand(domain) is None:
        raise NotFound(f"no brand {domain}", domain=domain)
    return domain


async def add_operator(request: web.Request) -> web.Response:
    domain = await _brand(request)
    body = await read_model(request, OperatorCreate)
    record, token = await services(request).desk.add_operator(
        domain, body.handle, body.display_name, body.email, body.skills
    )
    return json_response(
        {"address": record.address, "handle": record.handle, "token": token, **record.view()},
        status=201,
    )


async def list_operators(request: web.Request) -> web.Response:
    domain = await _brand(request)
    found = await services(request).desk.operators.for_brand(domain)
    return json_response({"items": [record.view() for record in found]})


ROUTES = (
    Route(
        "POST",
        "/v1/brands/{domain}/operators",
        add_operator,
        "Add an operator; its token is shown once",
        "token",
        body=OperatorCreate,
        answers=(Success(201, OPERATOR_CREATED, "Added: the operator token, shown once"),),
        tag="operators",
        refusals=("address_invalid", "forbidden", "not_found", "address_taken"),
    ),
    Route(
        "GET",
        "/v1/brands/{domain}/operators",
        list_operators,
        "The brand's operators",
        "token",
        answers=(Success(200, OPERATORS),),
        tag="operators",
        refusals=("address_invalid", "forbidden", "not_found"),
    ),
)
