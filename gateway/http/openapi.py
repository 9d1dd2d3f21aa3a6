"""The OpenAPI 3.1 document, generated from the route table the router is built from."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from gateway.http.routes import Route

_PARAM = re.compile(r"{([^}]+)}")

_AUTH: dict[str, list[dict[str, list[str]]]] = {
    "none": [],
    "envelope": [],
    "agent": [{"agentJwt": []}],
    "token": [{"opaqueToken": []}],
    "agent-or-token": [{"agentJwt": []}, {"opaqueToken": []}],
}


def document(routes: Iterable[Route], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Problem": _PROBLEM}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "tags": [route.tag],
            "security": _AUTH[route.auth],
            "responses": {
                str(route.ok): {
                    "description": "OK",
                    "content": {"text/event-stream" if route.stream else "application/json": {}},
                },
                "default": {
                    "description": "An RFC 9457 problem",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                },
            },
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(route.path)
        ] + [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in route.query
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            name = route.body.__name__
            schemas[name] = route.body.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            for sub_name, sub in schemas[name].pop("$defs", {}).items():
                schemas[sub_name] = sub
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                },
            }
        elif route.auth == "envelope":
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}
                },
            }
            schemas["Envelope"] = _ENVELOPE
        elif route.method in ("POST", "PUT", "PATCH"):
            # Bodies validated outside pydantic (the brand policy document): still a JSON
            # object, and the document must say that a body is expected.
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
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
            "schemas": schemas,
            "securitySchemes": {
                "agentJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "opaqueToken": {"type": "http", "scheme": "bearer", "bearerFormat": "sbt_"},
            },
        },
    }


_PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
}

_ENVELOPE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["v", "id", "from", "to", "created_at", "body", "sig"],
    "properties": {
        "v": {"const": "switchboard/1"},
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"},
        "from": {"type": "string"},
        "to": {"type": "string"},
        "task": {"type": ["string", "null"]},
        "reply_to": {"type": ["string", "null"]},
        "act": {
            "enum": [
                "say",
                "ask",
                "resolve",
                "escalate",
                "reject",
                "fail",
                "cancel",
                "confirm",
                "status",
            ]
        },
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "body": {"type": "object"},
        "meta": {"type": "object"},
        "sig": {"type": "object"},
    },
}
