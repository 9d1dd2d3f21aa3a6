"""Garbage to `/v1/messages` (and `/v1/agents`): hypothesis-made JSON values, envelope-shaped
objects, mutated (and re-signed) envelopes and raw bytes never produce a 500, and every refusal
is an RFC 9457 problem. The values include what Python's parser cannot take: integers of more
digits than it converts, and nesting deeper than the gateway reads (up to 3,000 levels, so an
example stays fast). One gateway serves all examples: the tests are sync and drive their own
loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity.envelope import sign
from identity.errors import IdentityError
from tests.conftest import make_settings, start_gateway
from tests.integration.wire import PROBLEM, Answer, request

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

DIGITS = sys.get_int_max_str_digits()


@dataclass(frozen=True)
class Raw:
    """JSON text put in as it is: what `json.dumps` cannot write (an integer of more digits
    than Python converts) or what would take hypothesis long to build (deep nesting)."""

    text: str


huge_integers = st.builds(
    lambda digits, sign: Raw(sign + "9" * digits),
    st.integers(DIGITS + 1, DIGITS + 1000),
    st.sampled_from(["", "-"]),
)


def _nest(levels: int, arrays: bool, leaf: str) -> Raw:
    if arrays:
        return Raw("[" * levels + leaf + "]" * levels)
    return Raw('{"a":' * levels + leaf + "}" * levels)


deep_nesting = st.builds(
    _nest, st.integers(100, 3000), st.booleans(), st.sampled_from(["1", '"x"', "null"])
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | huge_integers
    | deep_nesting,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
MEMBERS = [
    "v",
    "id",
    "from",
    "to",
    "task",
    "reply_to",
    "act",
    "created_at",
    "expires_at",
    "body",
    "meta",
    "sig",
]


class _Live:
    """A gateway with a brand agent and a personal agent, on a loop this test owns."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.context = start_gateway(make_settings(tmp / "var"))
        self.harness = self.loop.run_until_complete(self.context.__aenter__())
        self.loop.run_until_complete(
            self.harness.brand("acme.example", [("support", "Speakers", ["lights"])])
        )
        self.alice = self.loop.run_until_complete(self.harness.person("alice"))
        self.task = self.loop.run_until_complete(self.alice.send("acme.example", "hello"))["task"]

    def post(self, data: bytes, path: str = "/v1/messages") -> Answer:
        return self.loop.run_until_complete(
            request(self.harness.session, "POST", self.harness.url + path, data=data)
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.context.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[_Live]:
    gateway = _Live(tmp_path)
    try:
        yield gateway
    finally:
        gateway.close()


def _check(answer: Answer) -> None:
    assert answer.status != 500 and answer.status < 600, answer.body
    if answer.status >= 400:
        assert answer.content_type == PROBLEM
        assert answer.body["code"] and answer.body["detail"]
        assert answer.body["type"] == f"urn:switchboard:error:{answer.body['code']}"
    else:
        assert answer.status in (200, 202)
        assert set(answer.body) >= {"id", "task", "task_state", "control", "duplicate"}


def _text(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        members = (json.dumps(k, ensure_ascii=False) + ":" + _text(v) for k, v in value.items())
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _dumps(value: Any) -> bytes:
    return _text(value).encode("utf-8", "surrogatepass")


@SETTINGS
@given(value=json_values)
def test_any_json_value_gets_a_problem(live, value):
    """Any JSON value is answered with a 4xx problem (it cannot be a signed envelope)."""
    answer = live.post(_dumps(value))
    _check(answer)
    assert answer.status >= 400


@SETTINGS
@given(value=json_values)
def test_any_json_value_to_registration_gets_a_problem(live, value):
    """POST /v1/agents reads its body before it authenticates: any JSON value sent without
    credentials is a 4xx problem, never a 500."""
    answer = live.post(_dumps(value), "/v1/agents")
    _check(answer)
    assert answer.status >= 400


@SETTINGS
@given(value=st.fixed_dictionaries({}, optional={m: json_values for m in MEMBERS}))
def test_envelope_shaped_objects_get_a_problem(live, value):
    """Objects with envelope members holding arbitrary values are refused as problems."""
    answer = live.post(_dumps(value))
    _check(answer)
    assert answer.status >= 400


@SETTINGS
@given(member=st.sampled_from([*MEMBERS, "extra"]), value=json_values, resign=st.booleans())
def test_mutated_envelopes_never_fail_the_gateway(live, member, value, resign):
    """A valid envelope with one member replaced (and perhaps signed again) gets an answer or
    a problem, never a 500."""
    envelope = live.alice.envelope(
        "support@acme.example" if member != "to" else "acme.example", "hi", task=live.task
    )
    envelope[member] = value
    if resign:
        with contextlib.suppress(IdentityError):  # not canonicalisable: send it as it is
            envelope = sign(envelope, live.alice.key)
    _check(live.post(_dumps(envelope)))


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_raw_bytes_get_a_problem(live, data):
    """Arbitrary bytes are refused with a 4xx problem."""
    answer = live.post(data)
    _check(answer)
    assert answer.status >= 400


@SETTINGS
@given(text=st.text(max_size=300))
def test_text_bodies_get_a_problem(live, text):
    """Arbitrary text (including lone surrogates, escaped) is refused with a 4xx problem."""
    answer = live.post(text.encode("utf-8", "surrogatepass"))
    _check(answer)
    assert answer.status >= 400


@pytest.mark.parametrize(
    "fragment",
    [
        '"meta": {"x": "\\ud800"}',
        '"meta": {"x": 1e400}',
        '"meta": {"x": 18446744073709551616}',
        '"meta": {"x": -0.0}',
        '"meta": ' + "[" * 5000 + "]" * 5000,
        '"meta": {"\\u0000": "\\u0000"}',
    ],
)
def test_awkward_json_values_in_an_envelope(live, fragment):
    """Lone surrogates, huge numbers and deep nesting inside an envelope are problems."""
    envelope = live.alice.envelope("acme.example", "hi")
    envelope.pop("meta")
    text = json.dumps(envelope)
    answer = live.post((text[:-1] + ", " + fragment + "}").encode())
    _check(answer)
