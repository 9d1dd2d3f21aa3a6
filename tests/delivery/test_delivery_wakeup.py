"""The `work.<kind>` wake-up message: the row and its partition, and the older forms."""

from __future__ import annotations

import pytest

from gateway.delivery.wakeup import read_wake_up, wake_up


@pytest.mark.parametrize("partition", ["support@acme.example", "acme.example", "a b c", "ü"])
def test_a_wake_up_names_the_row_and_its_partition(partition: str) -> None:
    assert read_wake_up(wake_up(42, partition)) == (42, partition)


@pytest.mark.parametrize(
    ("data", "read"),
    [(b"42", (42, None)), (b"", None), (b"x 42", None), (b"\xff", None), (b"7 ", (7, None))],
)
def test_older_and_unnamed_wake_ups(data: bytes, read: tuple[int, str | None] | None) -> None:
    assert read_wake_up(data) == read
