"""JSON that Python's parser cannot take, or that the gateway refuses to keep: integers of
more digits than Python converts (4,300 by default) and arrays or objects nested deeper than
128 levels. Each is a 400 `invalid_json` problem saying what is wrong and where, on every
endpoint that reads a JSON body, before or after authentication, and changes nothing."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from identity.envelope import sign
from tests.conftest import ADMIN_TOKEN
from tests.integration.wire import assert_problem, footprint, request

MAX_JSON_DEPTH = 128  # docs/choices.md: the gateway reads JSON nested at most 128 levels
DIGITS = sys.get_int_max_str_digits()
HUGE = b"[" + b"9" * (DIGITS + 100) + b"]"
DEEP = b"[" * 5000 + b"]" * 5000
JUST_TOO_DEEP = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


async def _snapshot(gateway: Any, domain: str = "acme.example") -> tuple[object, ...]:
    """What a JSON body could change: agents, the brand's policy, tasks and inboxes."""
    directory = gateway.services.directory
    brand = await directory.brand(domain)
    return (
        await directory.count_agents(),
        (brand.policy, brand.policy_version) if brand else None,
        await footprint(gateway),
    )


# /v1/messages --------------------------------------------------------------------------------


async def test_a_huge_integer_as_the_body_is_invalid_json(gateway, refused):
    """`[999…9]` with more digits than Python converts is 400 invalid_json naming the
    integer's digits, the limit and where it starts (it was a 500)."""
    await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    await refused(HUGE, 400, "invalid_json", "integer", f"{DIGITS + 100} digits", str(DIGITS))
    problem, _ = await refused(HUGE, 400, "invalid_json", "line 1 column 2")
    assert "string" in problem["detail"]  # says how to send such a number


async def test_a_huge_integer_in_an_envelope_is_invalid_json(gateway, refused):
    """An envelope whose meta holds a huge integer is refused as invalid_json (was a 500)."""
    await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    envelope = alice.envelope("acme.example", "hi")
    envelope.pop("meta")
    text = json.dumps(envelope)
    body = (text[:-1] + ', "meta": {"n": ' + "7" * (DIGITS + 1) + "}}").encode()
    await refused(body, 400, "invalid_json", "integer", f"{DIGITS + 1} digits")


@pytest.mark.parametrize("body", [DEEP, JUST_TOO_DEEP], ids=["5000", "limit+1"])
async def test_deep_nesting_as_the_body_is_invalid_json(gateway, refused, body):
    """Arrays nested beyond the limit are 400 invalid_json naming the limit and where the
    nesting goes past it."""
    await refused(body, 400, "invalid_json", "nested", str(MAX_JSON_DEPTH), "column")


async def test_a_signed_envelope_nested_beyond_the_limit_is_refused(gateway, refused):
    """A correctly signed envelope whose meta nests deeper than the limit is refused: kept,
    it would have to be parsed again by every reader, with less stack to spare (one nested
    near Python's recursion limit was a 500, and broke its recipient's inbox)."""
    await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    envelope = alice.envelope("acme.example", "hi")
    envelope["meta"] = {"deep": _nested(MAX_JSON_DEPTH + 10)}
    await refused(sign(envelope, alice.key), 400, "invalid_json", "nested", str(MAX_JSON_DEPTH))


async def test_an_envelope_nested_to_the_limit_is_accepted(gateway):
    """The limit counts the envelope object itself: meta's value may nest to the limit less
    the two objects around it."""
    await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    envelope = alice.envelope("acme.example", "hi")
    envelope["meta"] = {"deep": _nested(MAX_JSON_DEPTH - 2)}
    answer = await request(
        gateway.session, "POST", gateway.url + "/v1/messages", body=sign(envelope, alice.key)
    )
    assert answer.status == 202, answer.body


# Other endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [DEEP, HUGE, JUST_TOO_DEEP], ids=["deep", "huge", "limit+1"])
@pytest.mark.parametrize("who", ["anonymous", "brand admin"])
async def test_registration_bodies_python_cannot_parse_are_invalid_json(gateway, body, who):
    """POST /v1/agents reads its body before it authenticates: deep nesting and huge
    integers are 400 invalid_json for anyone (deep nesting was a 500), and register
    nothing."""
    acme, _ = await gateway.brand("acme.example")
    before = await _snapshot(gateway)
    token = acme.token if who == "brand admin" else None
    answer = await request(
        gateway.session, "POST", gateway.url + "/v1/agents", token=token, data=body
    )
    words = ("integer", "digits") if body is HUGE else ("nested", str(MAX_JSON_DEPTH))
    assert_problem(answer, 400, "invalid_json", *words)
    assert await _snapshot(gateway) == before


@pytest.mark.parametrize(
    "member",
    [
        b"[" * 5000 + b"]" * 5000,
        b"9" * (DIGITS + 1),
        b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
    ],
    ids=["deep", "huge", "deep-objects"],
)
async def test_a_policy_python_cannot_parse_is_invalid_json(gateway, member):
    """PUT /v1/brands/{domain}/policy with such a member is 400 invalid_json, and the policy
    and its version stay as they were."""
    acme, _ = await gateway.brand("acme.example")
    before = await _snapshot(gateway)
    answer = await request(
        gateway.session,
        "PUT",
        gateway.url + "/v1/brands/acme.example/policy",
        token=acme.token,
        data=b'{"contact": ' + member + b"}",
    )
    assert_problem(answer, 400, "invalid_json", "line 1 column")
    assert await _snapshot(gateway) == before


@pytest.mark.parametrize("body", [DEEP, HUGE], ids=["deep", "huge"])
async def test_a_brand_body_python_cannot_parse_is_invalid_json(gateway, body):
    """POST /v1/brands by the admin: 400 invalid_json, and no brand is made."""
    before = await _snapshot(gateway)
    answer = await request(
        gateway.session, "POST", gateway.url + "/v1/brands", token=ADMIN_TOKEN, data=body
    )
    assert_problem(answer, 400, "invalid_json")
    assert await _snapshot(gateway) == before
