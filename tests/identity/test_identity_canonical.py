"""RFC 8785 canonical form: agreement with the reference package, and its invariants."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from identity.canonical import MAX_SAFE_INTEGER, canonicalize, format_number, is_plain
from identity.errors import InvalidJson

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_agrees_with_reference_implementation(value: Any) -> None:
    """Our bytes equal the `rfc8785` package's for any JSON value, floats and astral keys too."""
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(InvalidJson):
            canonicalize(value)
        return
    assert canonicalize(value) == expected


@given(st.dictionaries(st.text(), json_values, max_size=8), st.randoms(use_true_random=False))
def test_independent_of_member_order_and_whitespace(value: dict[str, Any], rnd: Any) -> None:
    """Reordering members and re-serialising with other whitespace never changes the bytes."""
    items = list(value.items())
    rnd.shuffle(items)
    text = json.dumps(dict(items), indent=rnd.choice([None, 1, 4]), ensure_ascii=rnd.random() < 0.5)
    assert canonicalize(json.loads(text)) == canonicalize(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_and_match_reference(number: float) -> None:
    """ECMAScript number text parses back to the same float and equals the reference's."""
    text = format_number(number)
    assert float(text) == number
    assert text.encode() == rfc8785.dumps(number)


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (-0.0, "0"),
        (2.0, "2"),
        (129.5, "129.5"),
        (-1.5e-9, "-1.5e-9"),
        (5e-324, "5e-324"),
    ],
)
def test_number_forms(number: float, text: str) -> None:
    """The JCS number forms of RFC 8785 appendix B."""
    assert format_number(number) == text


def test_key_order_is_utf16_not_code_points() -> None:
    """An astral key sorts before U+FB01 (UTF-16 order), unlike code point order."""
    assert canonicalize({"\ufb01": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ufb01":1}'.encode()


def test_plain_detection() -> None:
    """Floats, huge integers and astral member names leave the fast path; the rest stays."""
    assert is_plain({"a": [1, "x", None, True, {"b": "é"}]})
    assert not is_plain({"a": 1.5})
    assert not is_plain({"a": [2**53]})
    assert not is_plain({"\U0001f600": 1})
    assert not is_plain(OrderedDict(a=1))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a": math.nan}, "NaN or infinite"),
        ({"a": [math.inf]}, "NaN or infinite"),
        ({"a": 2**53}, "beyond"),
        ({"a": "\ud800"}, "lone surrogate"),
        ({"\udc00": 1}, "lone surrogate"),
        ({1: "a"}, "non-string member name"),
        ({"a": {1, 2}}, "not a JSON type"),
    ],
)
def test_non_json_values_are_refused(value: Any, problem: str) -> None:
    """Values outside I-JSON raise invalid_json naming the problem."""
    with pytest.raises(InvalidJson) as caught:
        canonicalize(value)
    assert problem in caught.value.detail


def test_mappings_and_tuples_are_accepted() -> None:
    """Non-dict mappings and tuples canonicalise like dicts and lists."""
    assert canonicalize(OrderedDict([("b", (1, 2)), ("a", None)])) == b'{"a":null,"b":[1,2]}'


def test_deep_nesting_is_refused() -> None:
    """A value nested deeper than the interpreter can walk is invalid_json, not a crash."""
    value: Any = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(InvalidJson, match="nested too deeply"):
        canonicalize(value)
