"""Envelopes: strict JSON, shape rules, the acceptance order of verify, and round trips."""

from __future__ import annotations

import contextlib
import copy
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.address import Address
from identity.b64 import b64url_encode
from identity.canonical import canonicalize
from identity.envelope import (
    MAX_PARTS,
    MAX_REQUEST_BYTES,
    MAX_TEXT_BYTES,
    KeyState,
    check_size,
    parse,
    parse_json,
    sign,
    verify,
)
from identity.errors import IdentityError
from identity.keys import PrivateKey

Obj = dict[str, Any]


def _refusal(obj: object) -> IdentityError:
    with pytest.raises(IdentityError) as caught:
        parse(obj)
    return caught.value


# --- size and JSON -------------------------------------------------------------------------


def test_check_size_limit() -> None:
    """256 KiB passes; one byte more is payload_too_large with the sizes in the detail."""
    check_size(b"x" * MAX_REQUEST_BYTES)
    with pytest.raises(IdentityError) as caught:
        check_size(b"x" * (MAX_REQUEST_BYTES + 1))
    assert caught.value.code == "payload_too_large"
    assert str(MAX_REQUEST_BYTES + 1) in caught.value.detail


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"a": 1', "line 1 column 8"),
        (b"", "line 1 column 1"),
        (b'{"a": 1}\n{"b": 2}', "Extra data at line 2"),
        (b'{"a": 1, "a": 2}', "'a' appears twice"),
        (b'{"x": {"a": 1, "a": 1}}', "'a' appears twice"),
        (b'{"a": NaN}', "NaN is not a JSON value"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON value"),
        (b'{"a": "\xff"}', "not UTF-8: byte 7"),
        (b"[" * 100_000, "more than 128 levels deep at line 1 column 129"),
        (b"[" * 129 + b"]" * 129, "more than 128 levels deep at line 1 column 129"),
        (b'{"a":' * 129 + b"1" + b"}" * 129, "more than 128 levels deep at line 1 column 641"),
        (b'["[[[", ' + b"[" * 128 + b"]" * 128 + b"]", "deep at line 1 column 136"),
        (b"[" + b"9" * 4301 + b"]", "an integer of 4301 digits at line 1 column 2"),
        (b'{"a": 1.' + b"5" * 5000 + b',\n "b": -' + b"7" * 4400 + b"}", "4400 digits at line 2"),
    ],
)
def test_parse_json_refusals_say_where(body: bytes, problem: str) -> None:
    """Syntax errors, duplicates, NaN, bad UTF-8, nesting deeper than 128 levels and integers
    of more digits than Python converts are invalid_json, located."""
    with pytest.raises(IdentityError) as caught:
        parse_json(body)
    assert caught.value.code == "invalid_json"
    assert problem in caught.value.detail


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 128 + b"]" * 128,
        b'{"a":' * 127 + b"[1]" + b"}" * 127,
        b"[" + b"[]," * 500 + b"[]]",  # many brackets, shallow
        b'["' + b"[" * 500 + b'"]',  # brackets in a string
        b"[" + b"9" * 4300 + b", -" + b"9" * 4300 + b"]",
        b"[1." + b"9" * 5000 + b", 1e" + b"9" * 10 + b"]",  # long fractions are floats
        b'["' + b"9" * 5000 + b'"]',
    ],
)
def test_parse_json_reads_up_to_the_limits(body: bytes) -> None:
    """128 levels, any number of brackets side by side or in strings, 4300-digit integers and
    long fractions parse."""
    parse_json(body)


# --- shape ---------------------------------------------------------------------------------


def _signed(unsigned: Obj, key: PrivateKey) -> Obj:
    return sign(unsigned, key)


def test_parse_builds_the_envelope(unsigned: Obj, alice: PrivateKey) -> None:
    """A valid envelope parses into typed fields, keeping the raw object and canonical bytes."""
    signed = _signed(unsigned, alice)
    envelope = parse(signed)
    assert envelope.sender == Address("alice", "people.example")
    assert envelope.to == "sonos.example"
    assert envelope.act == "say" and envelope.task is None and envelope.expires_at is None
    assert envelope.created_at == datetime.fromisoformat("2026-11-26T06:10:00+00:00")
    assert envelope.raw is signed
    assert b'"sig"' not in envelope.canonical
    assert envelope.replay_key == ("alice@people.example", unsigned["id"])
    assert len(envelope.digest) == 64
    assert envelope.sig.kid == alice.kid


def test_absent_optional_members_take_their_defaults(unsigned: Obj, alice: PrivateKey) -> None:
    """Absent act, task, reply_to, expires_at, meta and parts mean say, null, {} and []."""
    for name in ("act", "task", "reply_to", "expires_at", "meta"):
        del unsigned[name]
    del unsigned["body"]["parts"]
    envelope = parse(_signed(unsigned, alice))
    assert (envelope.act, envelope.task, envelope.meta, envelope.parts) == ("say", None, {}, ())
    assert b'"act"' not in envelope.canonical  # the signature covers what was sent


def _mutated(unsigned: Obj, alice: PrivateKey, change: Any) -> Obj:
    signed = _signed(unsigned, alice)
    change(signed)
    return signed


SHAPE_CASES: list[tuple[str, Any, str, str]] = [
    ("unknown member", lambda e: e.update(extra=1), "schema_invalid", "'extra' is not an envelope"),
    ("missing v", lambda e: e.pop("v"), "schema_invalid", "v is required"),
    ("missing sig", lambda e: e.pop("sig"), "schema_invalid", "sig is required"),
    ("missing body", lambda e: e.pop("body"), "schema_invalid", "body is required"),
    ("wrong v", lambda e: e.update(v="switchboard/2"), "schema_invalid", "v must be"),
    ("short id", lambda e: e.update(id="abc"), "schema_invalid", "id must be 16 to 64"),
    ("id type", lambda e: e.update(id=7), "schema_invalid", "id must be a string, not a number"),
    ("bad act", lambda e: e.update(act="shout"), "schema_invalid", "act must be one of"),
    ("task type", lambda e: e.update(task=1), "schema_invalid", "task must be a string or null"),
    ("bad task", lambda e: e.update(task="t sk"), "schema_invalid", "task must be 1 to 64"),
    ("bad reply_to", lambda e: e.update(reply_to="x"), "schema_invalid", "reply_to must be"),
    (
        "no Z",
        lambda e: e.update(created_at="2026-11-26T06:10:00+00:00"),
        "schema_invalid",
        "created_at must be an RFC 3339 UTC timestamp",
    ),
    (
        "bad date",
        lambda e: e.update(created_at="2026-13-26T06:10:00Z"),
        "schema_invalid",
        "created_at is not a real date",
    ),
    ("expiry type", lambda e: e.update(expires_at=5), "schema_invalid", "expires_at must be"),
    ("body type", lambda e: e.update(body="hi"), "schema_invalid", "body must be an object"),
    ("body member", lambda e: e["body"].update(html="<b>"), "schema_invalid", "body.html"),
    ("text type", lambda e: e["body"].update(text=None), "schema_invalid", "body.text must be"),
    (
        "empty say",
        lambda e: e["body"].update(text=" "),
        "schema_invalid",
        "body.text must not be empty for act 'say'",
    ),
    ("parts type", lambda e: e["body"].update(parts={}), "schema_invalid", "body.parts must be"),
    ("part type", lambda e: e["body"].update(parts=[1]), "schema_invalid", "body.parts[0] must"),
    (
        "part kind",
        lambda e: e["body"].update(parts=[{"kind": "file"}]),
        "schema_invalid",
        "body.parts[0].kind",
    ),
    (
        "data needs data",
        lambda e: e["body"].update(parts=[{"kind": "data"}]),
        "schema_invalid",
        "body.parts[0].data is required",
    ),
    (
        "part member",
        lambda e: e["body"].update(parts=[{"kind": "data", "data": 1, "x": 2}]),
        "schema_invalid",
        "body.parts[0].x is not a member",
    ),
    (
        "http url",
        lambda e: e["body"].update(parts=[{"kind": "url", "url": "http://a.example/"}]),
        "schema_invalid",
        "body.parts[0].url must be an https:// URL",
    ),
    (
        "bad sha",
        lambda e: e["body"].update(
            parts=[{"kind": "url", "url": "https://a.example/f", "sha256": "abc"}]
        ),
        "schema_invalid",
        "body.parts[0].sha256",
    ),
    (
        "bad base64",
        lambda e: e["body"].update(
            parts=[{"kind": "raw", "media_type": "text/plain", "base64": "a*b="}]
        ),
        "schema_invalid",
        "body.parts[0].base64",
    ),
    (
        "bad media",
        lambda e: e["body"].update(parts=[{"kind": "raw", "media_type": "text", "base64": ""}]),
        "schema_invalid",
        "body.parts[0].media_type",
    ),
    ("meta type", lambda e: e.update(meta=[]), "schema_invalid", "meta must be an object"),
    ("sig type", lambda e: e.update(sig="x"), "schema_invalid", "sig must be an object"),
    ("sig alg", lambda e: e["sig"].update(alg="RS256"), "schema_invalid", "sig.alg must be"),
    ("sig member", lambda e: e["sig"].update(crit=1), "schema_invalid", "sig.crit"),
    ("sig value", lambda e: e["sig"].update(value=None), "schema_invalid", "sig.value must be"),
    ("bad from", lambda e: e.update({"from": "alice"}), "address_invalid", "from: "),
    ("domain from", lambda e: e.update({"from": "people.example"}), "address_invalid", "from: "),
    ("bad to", lambda e: e.update(to="x@y"), "address_invalid", "to: "),
    ("from type", lambda e: e.update({"from": 3}), "schema_invalid", "from must be a string"),
    (
        "long text",
        lambda e: e["body"].update(text="é" * (MAX_TEXT_BYTES // 2 + 1)),
        "payload_too_large",
        "body.text is 32770 bytes",
    ),
    (
        "many parts",
        lambda e: e["body"].update(parts=[{"kind": "data", "data": 0}] * 17),
        "payload_too_large",
        "body.parts holds 17 parts",
    ),
    ("huge int", lambda e: e["meta"].update(n=2**60), "invalid_json", "$.meta.n"),
    ("surrogate", lambda e: e["meta"].update(s="\udc00"), "invalid_json", "lone surrogate"),
]


@pytest.mark.parametrize(
    ("change", "code", "problem"),
    [case[1:] for case in SHAPE_CASES],
    ids=[case[0] for case in SHAPE_CASES],
)
def test_shape_errors_name_the_member(
    unsigned: Obj, alice: PrivateKey, change: Any, code: str, problem: str
) -> None:
    """Each shape rule gives its code and a detail that names the member at fault."""
    error = _refusal(_mutated(unsigned, alice, change))
    assert error.code == code
    assert problem in error.detail


def test_non_object_envelope() -> None:
    """A JSON array is schema_invalid."""
    assert _refusal([1]).code == "schema_invalid"


def test_size_rules_come_before_shape(unsigned: Obj, alice: PrivateKey) -> None:
    """An envelope both too large and misshapen reports payload_too_large first."""
    signed = _signed(unsigned, alice)
    signed["body"]["parts"] = [1] * (MAX_PARTS + 1)
    signed["extra"] = True
    assert _refusal(signed).code == "payload_too_large"


def test_control_acts_may_have_empty_text(unsigned: Obj, alice: PrivateKey) -> None:
    """status, cancel, resolve etc. accept empty text; say and ask do not."""
    for act in ("status", "cancel", "confirm", "resolve", "reject", "fail", "escalate"):
        parse(_signed({**unsigned, "act": act, "body": {"text": "", "parts": []}}, alice))
    assert _refusal(_signed({**unsigned, "act": "ask", "body": {"text": ""}}, alice)).code == (
        "schema_invalid"
    )


def test_all_part_kinds_accepted(unsigned: Obj, alice: PrivateKey) -> None:
    """The three part kinds with their members parse."""
    parts = [
        {"kind": "data", "data": {"x": [1.5, None]}},
        {
            "kind": "url",
            "url": "https://cdn.example/a.pdf?x=1",
            "media_type": "application/pdf",
            "name": "a.pdf",
            "sha256": "ab" * 32,
        },
        {
            "kind": "raw",
            "media_type": "text/plain; charset=utf-8",
            "name": "a.txt",
            "base64": "aGk=",
        },
    ]
    envelope = parse(_signed({**unsigned, "body": {"text": "see", "parts": parts}}, alice))
    assert envelope.parts == tuple(parts)


def test_timestamps_with_and_without_fractions(unsigned: Obj, alice: PrivateKey) -> None:
    """created_at may carry no fraction or up to nanoseconds."""
    for stamp in ("2026-11-26T06:10:00Z", "2026-11-26T06:10:00.123456789Z"):
        envelope = parse(_signed({**unsigned, "created_at": stamp}, alice))
        assert envelope.created_at.replace(microsecond=0).isoformat() == "2026-11-26T06:10:00+00:00"


# --- verify --------------------------------------------------------------------------------


def _verify_code(obj: Obj, keys: dict[str, KeyState], now: datetime) -> str:
    with pytest.raises(IdentityError) as caught:
        verify(parse(obj), keys, now)
    return caught.value.code


def test_verify_accepts_a_good_envelope(
    unsigned: Obj, alice: PrivateKey, alice_keys: dict[str, KeyState], now: datetime
) -> None:
    """A freshly signed envelope verifies at the edges of the clock window."""
    envelope = parse(_signed(unsigned, alice))
    for offset in (-300, 0, 300):
        verify(envelope, alice_keys, envelope.created_at + timedelta(seconds=offset))


def test_verify_order_and_codes(
    unsigned: Obj, alice: PrivateKey, alice_keys: dict[str, KeyState], now: datetime
) -> None:
    """unknown_key, key_revoked, signature_invalid, clock_skew and expired, in that order."""
    signed = _signed(unsigned, alice)
    assert _verify_code(signed, {}, now) == "unknown_key"
    revoked = {alice.kid: KeyState(alice.public, revoked=True)}
    assert _verify_code(signed, revoked, now) == "key_revoked"
    tampered = copy.deepcopy(signed)
    tampered["body"]["text"] += "!"
    assert _verify_code(tampered, alice_keys, now) == "signature_invalid"
    assert _verify_code(tampered, alice_keys, now + timedelta(days=1)) == "signature_invalid"
    assert _verify_code(signed, alice_keys, now + timedelta(seconds=331)) == "clock_skew"
    assert _verify_code(signed, alice_keys, now - timedelta(seconds=331)) == "clock_skew"
    expiring = _signed({**unsigned, "expires_at": "2026-11-26T06:10:20Z"}, alice)
    assert _verify_code(expiring, alice_keys, now) == "expired"


def test_verify_details_name_the_problem(
    unsigned: Obj, alice: PrivateKey, alice_keys: dict[str, KeyState], now: datetime
) -> None:
    """Each verify refusal's detail says what is wrong."""
    signed = _signed(unsigned, alice)
    with pytest.raises(IdentityError, match=r"is not a key of alice@people\.example"):
        verify(parse(signed), {}, now)
    with pytest.raises(IdentityError, match="is revoked"):
        verify(parse(signed), {alice.kid: KeyState(alice.public, True)}, now)
    with pytest.raises(IdentityError, match="s from the gateway's clock"):
        verify(parse(signed), alice_keys, now + timedelta(hours=1))
    with pytest.raises(IdentityError, match="expired at"):
        verify(
            parse(_signed({**unsigned, "expires_at": unsigned["created_at"]}, alice)),
            alice_keys,
            now,
        )
    for value, problem in (
        ("not*base64", "not base64url"),
        (b64url_encode(bytes(63)), "decodes to 63 bytes"),
        (b64url_encode(bytes(64)), "does not verify"),
    ):
        bad = copy.deepcopy(signed)
        bad["sig"]["value"] = value
        with pytest.raises(IdentityError, match=problem) as caught:
            verify(parse(bad), alice_keys, now)
        assert caught.value.code == "signature_invalid"


def test_sign_replaces_an_existing_sig(unsigned: Obj, alice: PrivateKey) -> None:
    """Signing a signed object re-signs the object minus its old sig."""
    other = PrivateKey.from_seed(bytes(32))
    resigned = sign(_signed(unsigned, other), alice)
    assert resigned == _signed(unsigned, alice)
    assert "sig" not in unsigned  # the input is not modified


# --- properties ----------------------------------------------------------------------------

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_texts = st.text(min_size=1).filter(lambda text: not text.isspace())

# Hypothesis tests build their own copies rather than share function-scoped fixtures.
ALICE = PrivateKey.from_seed(bytes(range(32)))
ALICE_KEYS = {ALICE.kid: KeyState(ALICE.public)}
NOW = datetime.fromisoformat("2026-11-26T06:10:30+00:00")


def _base(text: str, parts: list[Any], meta: Obj) -> Obj:
    return {
        "v": "switchboard/1",
        "id": "01JDZ4Q6W5M8X0B7K3N2R9T1VE",
        "from": "alice@people.example",
        "to": "sonos.example",
        "task": None,
        "reply_to": None,
        "act": "say",
        "created_at": "2026-11-26T06:10:00.000Z",
        "expires_at": None,
        "body": {"text": text, "parts": parts},
        "meta": meta,
    }


@settings(max_examples=60, deadline=None)
@given(text=_texts, data=_json, meta=st.dictionaries(st.text(), _json, max_size=4))
def test_sign_verify_round_trip(text: str, data: Any, meta: Obj) -> None:
    """Any Unicode text, data part and meta survive sign -> wire bytes -> parse -> verify."""
    obj = _base(text, [{"kind": "data", "data": data}], meta)
    body = json.dumps(sign(obj, ALICE), ensure_ascii=False).encode("utf-8")
    verify(parse(parse_json(body)), ALICE_KEYS, NOW)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_change_to_a_signed_member_fails(data: st.DataObject) -> None:
    """Replacing any signed value (outside sig) with a different one breaks verification."""
    obj = _base("hello", [{"kind": "data", "data": {"n": 1}}], {"trace": "a", "l": [True, None]})
    signed = sign(obj, ALICE)
    paths = [path for path in _paths(signed) if path[0] != "sig"]
    path = data.draw(st.sampled_from(paths))
    target = signed
    for step in path[:-1]:
        target = target[step]
    old = target[path[-1]]
    new = data.draw(_json.filter(lambda value: canonicalize(value) != canonicalize(old)))
    target[path[-1]] = new
    with pytest.raises(IdentityError):
        verify(parse(signed), ALICE_KEYS, NOW)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
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
                "x",
            ]
        ),
        _json,
        max_size=13,
    )
    | _json
)
def test_parse_raises_only_identity_errors(value: Any) -> None:
    """parse never fails with anything but an IdentityError, whatever JSON it is given."""
    with contextlib.suppress(IdentityError):
        parse(value)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_parse_of_near_valid_envelopes_raises_only_identity_errors(data: st.DataObject) -> None:
    """Valid envelopes with one member replaced by arbitrary JSON fail only as IdentityError."""
    signed = sign(_base("x", [{"kind": "url", "url": "https://a.example/"}], {"k": [1]}), ALICE)
    paths = _paths(signed)
    path = data.draw(st.sampled_from(paths))
    target = signed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = data.draw(_json)
    with contextlib.suppress(IdentityError):
        parse(signed)
