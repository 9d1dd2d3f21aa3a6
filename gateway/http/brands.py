"""Brands: creation by the admin, and the brand's policy."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import NotFound
from gateway.http.context import json_response, principal, read_json, read_model, services
from gateway.http.models import BrandCreate
from gateway.http.routes import Route, Success
from gateway.http.shapes import BRAND_CREATED, POLICY, STORED_POLICY
from identity.address import parse_domain
from routing.policy import Action, Target, authorize, policy_from_json, policy_to_json


async def create_brand(request: web.Request) -> web.Response:
    who = await principal(request)
    authorize(who, Action.CREATE_BRAND, Target())
    body = await read_model(request, BrandCreate)
    brand, token = await services(request).registry.create_brand(body.domain, body.display_name)
    return json_response(
        {"domain": brand.domain, "display_name": brand.display_name, "token": token}, status=201
    )


async def put_policy(request: web.Request) -> web.Response:
    svc = services(request)
    domain = parse_domain(request.match_info["domain"])
    authorize(await principal(request), Action.SET_POLICY, Target(brand=domain))
    if await svc.directory.brand(domain) is None:
        raise NotFound(f"no brand {domain}")
    policy = policy_from_json(await read_json(request))
    brand = await svc.directory.set_policy(domain, policy_to_json(policy))
    return json_response({**brand.policy, "version": brand.policy_version})


async def get_policy(request: web.Request) -> web.Response:
    svc = services(request)
    domain = parse_domain(request.match_info["domain"])
    authorize(await principal(request), Action.READ_POLICY, Target(brand=domain))
    brand = await svc.directory.brand(domain)
    if brand is None:
        raise NotFound(f"no brand {domain}")
    return json_response({**brand.policy, "version": brand.policy_version})


ROUTES = (
    Route(
        "POST",
        "/v1/brands",
        create_brand,
        "Create a brand and its brand-admin token",
        "token",
        body=BrandCreate,
        answers=(Success(201, BRAND_CREATED, "Created: the brand-admin token, shown once"),),
        tag="brands",
        refusals=("address_invalid", "forbidden", "brand_exists"),
    ),
    Route(
        "PUT",
        "/v1/brands/{domain}/policy",
        put_policy,
        "Set the brand's contact policy, rate limit and escalation rules",
        "token",
        body=POLICY,
        answers=(Success(200, STORED_POLICY, "Set: the policy with its version"),),
        tag="brands",
        refusals=("address_invalid", "forbidden", "not_found", "policy_invalid"),
    ),
    Route(
        "GET",
        "/v1/brands/{domain}/policy",
        get_policy,
        "Read the brand's policy",
        "token",
        answers=(Success(200, STORED_POLICY),),
        tag="brands",
        refusals=("address_invalid", "forbidden", "not_found"),
    ),
)
