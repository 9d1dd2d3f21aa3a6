"""The OpenAPI 3.1 document, generated from the route table the router is built from: each
operation's success statuses with their shapes, its problems by status with the protocol codes
each may carry, its typed parameters and its security."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.http.problems import PROBLEM_TYPE, STATUS
from gateway.http.routes import Param, Route, Shape, Success
from gateway.http.shapes import PROBLEM

_PARAM = re.compile(r"{([^}]+)}")
_REF = "#/components/schemas/"

_AUTH: dict[str, list[dict[str, list[str]]]] = {
    "none": [],
    "envelope": [],
    "agent": [{"agentJwt": []}],
    "token": [{"opaqueToken": []}],
    "agent-or-token": [{"agentJwt": []}, {"opaqueToken": []}],
}

# Every operation may fail unexpectedly; every body read may be too large, not JSON, or not
# of the body's shape; every credential checked may be refused.
_ALWAYS = ("internal",)
_BODY = ("payload_too_large", "invalid_json", "schema_invalid")
_CREDENTIAL = ("unauthorized",)


class _Components:
    """The shapes the document refers to, collected as operations use them."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, shape: Shape) -> dict[str, str]:
        if shape.name not in self.schemas:
            self.schemas[shape.name] = {}  # taken before the walk: shapes may nest
            self.schemas[shape.name] = self.resolve(shape.schema)
        return {"$ref": _REF + shape.name}

    def resolve(self, value: Any) -> Any:
        """`value` with every `Shape` in it replaced by a `$ref` to its component."""
        if isinstance(value, Shape):
            return self.ref(value)
        if isinstance(value, Mapping):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.resolve(item) for item in value]
        return value


def document(routes: Iterable[Route], version: str) -> dict[str, Any]:
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "tags": [route.tag],
            "security": _AUTH[route.auth],
            "responses": dict(
                sorted(
                    {
                        **{str(s.status): _success(s, components) for s in route.answers},
                        **_problems(_refusals(route), components),
                    }.items()
                )
            ),
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(route.path)
        ] + [_parameter(param) for param in route.params]
        if parameters:
            operation["parameters"] = parameters
        body = _body(route, components)
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard gateway",
            "version": version,
            "description": "Protocol switchboard/1: see PROTOCOL.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {
                "agentJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An EdDSA JWT signed by one of the calling agent's keys.",
                },
                "opaqueToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "sbt_",
                    "description": "An admin, brand-admin or operator token.",
                },
            },
        },
    }


def _success(success: Success, components: _Components) -> dict[str, Any]:
    response: dict[str, Any] = {"description": success.description}
    if success.shape is not None:
        media: dict[str, Any] = {"schema": components.ref(success.shape)}
        if success.events is not None:
            # OpenAPI has no word for an event's data: an extension names its shape.
            media["x-event-data"] = components.ref(success.events)
        response["content"] = {success.media: media}
    return response


def _refusals(route: Route) -> list[str]:
    codes = [*_ALWAYS]
    if route.body is not None:
        codes += _BODY
    if route.auth in ("agent", "token", "agent-or-token"):
        codes += _CREDENTIAL
    return list(dict.fromkeys([*codes, *route.refusals]))


def _problems(codes: list[str], components: _Components) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS[code][0], []).append(code)
    responses = {}
    for status, found in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": "A problem: " + ", ".join(found),
            "content": {
                PROBLEM_TYPE: {
                    "schema": {
                        **components.ref(PROBLEM),
                        "properties": {"status": {"const": status}, "code": {"enum": found}},
                    }
                }
            },
        }
        if "rate_limited" in found:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before sending again",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        responses[str(status)] = response
    return responses


def _parameter(param: Param) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": param.name,
        "in": param.where,
        "required": False,
        "schema": dict(param.schema),
    }
    if param.description:
        described["description"] = param.description
    return described


def _body(route: Route, components: _Components) -> dict[str, Any] | None:
    if route.body is None:
        return None
    if isinstance(route.body, Shape):
        return components.ref(route.body)
    name = route.body.__name__
    schema = route.body.model_json_schema(ref_template=_REF + "{model}")
    for sub_name, sub in schema.pop("$defs", {}).items():
        components.schemas[sub_name] = sub
    components.schemas[name] = schema
    return {"$ref": _REF + name}
