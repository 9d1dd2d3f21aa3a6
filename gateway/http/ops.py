"""Operations: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from gateway.http.context import json_response, services
from gateway.http.routes import Route, Success
from gateway.http.shapes import HEALTH, METRICS, OPENAPI, READINESS

ALL_ROUTES: web.AppKey[tuple[Route, ...]] = web.AppKey("routes")


def _version() -> str:
    try:
        return version("switchboard-gateway")
    except PackageNotFoundError:
        return "0.0.0+local"


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await services(request).ready()
    ok = all(checks.values())
    return json_response(
        {"status": "ready" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    text = await services(request).metrics.render()
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def openapi(request: web.Request) -> web.Response:
    from gateway.http.openapi import document

    routes: tuple[Route, ...] = request.app[ALL_ROUTES]
    return json_response(document(routes, _version()))


ROUTES = (
    Route(
        "GET",
        "/healthz",
        healthz,
        "Liveness",
        "none",
        answers=(Success(200, HEALTH),),
        tag="operations",
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness: database and bus reachable",
        "none",
        answers=(
            Success(200, READINESS, "Ready"),
            Success(503, READINESS, "Not ready: the checks say which part is not reachable"),
        ),
        tag="operations",
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics",
        "none",
        answers=(Success(200, METRICS, media="text/plain"),),
        tag="operations",
    ),
    Route(
        "GET",
        "/openapi.json",
        openapi,
        "This document",
        "none",
        answers=(Success(200, OPENAPI),),
        tag="operations",
    ),
)
