"""The served /openapi.json as a contract a real answer is checked against.

`Contract.check` finds the operation of a request in the document, requires the answer's
status and media type to be declared there, and validates the body with the JSON Schema the
document gives for that status: once as published (open objects, since the protocol may add
members) and once with every object closed, which proves each member the gateway sent is
documented.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.integration.wire import Answer

_BASE = "urn:switchboard:openapi"


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _pattern(template: str) -> str:
    """A regular expression for the paths a templated path stands for."""
    return "[^/]+".join(re.escape(part) for part in re.split(r"{[^}]+}", template))


def closed(value: Any) -> Any:
    """A copy where each object schema that lists its members and does not say whether
    others may appear refuses them."""
    if isinstance(value, list):
        return [closed(item) for item in value]
    if not isinstance(value, dict):
        return value
    found = {key: closed(item) for key, item in value.items()}
    if "properties" in found and "additionalProperties" not in found and "$ref" not in found:
        found["additionalProperties"] = False
    return found


class Contract:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.checked: set[tuple[str, str, int]] = set()
        self._validators = [self._validator(document), self._validator(closed(document))]

    @staticmethod
    def _validator(document: dict[str, Any]) -> Any:
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        registry: Registry[Any] = Registry().with_resource(_BASE, resource)
        return lambda pointer, value: Draft202012Validator(
            {"$ref": f"{_BASE}#/{pointer}"}, registry=registry
        ).validate(value)

    def template(self, path: str) -> str:
        """The documented path `path` (a served one, query left off) is an instance of; a
        literal segment wins over a parameter (/v1/inbox/stream is not an escalation id)."""
        path = path.partition("?")[0]
        found = [
            template
            for template in self.document["paths"]
            if re.fullmatch(_pattern(template), path)
        ]
        assert found, f"{path} is an instance of no path in the document"
        return min(found, key=lambda template: template.count("{"))

    def operation(self, method: str, path: str) -> dict[str, Any]:
        item = self.document["paths"][self.template(path)]
        operation = item.get(method.lower())
        assert operation is not None, f"{method} {path} is not in the document"
        return operation  # type: ignore[no-any-return]

    def check_status(self, method: str, path: str, status: int, content_type: str) -> str:
        """The status is declared for the operation, with this media type (if it has a
        body); returns the JSON pointer of its media type object ("" for no body)."""
        template = self.template(path)
        responses = self.operation(method, path)["responses"]
        assert str(status) in responses, (method, template, status)
        self.checked.add((method, template, status))
        content = responses[str(status)].get("content")
        if content is None:
            return ""
        assert content_type in content, (method, template, status, content_type)
        return _pointer(
            "paths", template, method.lower(), "responses", str(status), "content", content_type
        )

    def check(self, method: str, path: str, answer: Answer) -> None:
        """`answer` (to `method` on the served `path`) is as the document says: a declared
        status, its media type, and a body of its schema."""
        pointer = self.check_status(method, path, answer.status, answer.content_type)
        if not pointer:
            assert answer.body is None, (method, path, answer.body)
            return
        for validate in self._validators:
            try:
                validate(pointer + "/schema", answer.body)
            except ValidationError as exc:
                exc.add_note(f"{method} {path} answered {answer.status}")
                raise

    def check_event(self, method: str, path: str, data: Any) -> None:
        """One Server-Sent Event's `data` is of the shape the document names for it."""
        pointer = self.check_status(method, path, 200, "text/event-stream")
        for validate in self._validators:
            validate(pointer + "/x-event-data", data)

    def parameter(self, method: str, path: str, name: str) -> dict[str, Any]:
        for parameter in self.operation(method, path).get("parameters", []):
            if parameter["name"] == name:
                return parameter  # type: ignore[no-any-return]
        raise AssertionError(f"{method} {path} documents no parameter {name}")
