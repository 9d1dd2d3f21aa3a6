"""`identity.json_text.depth_exceeds` against a plain recursive count of the levels: each
array or object is one level, empty ones included."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from identity.json_text import depth_exceeds

values = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner, max_size=4)
    ),
    max_leaves=40,
)


def levels(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((levels(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((levels(item) for item in value.values()), default=0)
    return 0


@given(values, st.integers(min_value=0, max_value=8))
def test_depth_exceeds_agrees_with_counting_levels(value: Any, limit: int) -> None:
    assert depth_exceeds(value, limit) == (levels(value) > limit)


def test_an_empty_array_at_the_bottom_is_a_level() -> None:
    assert depth_exceeds(json.loads("[" * 129 + "]" * 129), 128)
    assert not depth_exceeds(json.loads("[" * 128 + "]" * 128), 128)
    assert depth_exceeds({"a": [{"b": {}}]}, 3) and not depth_exceeds({"a": [{"b": {}}]}, 4)
