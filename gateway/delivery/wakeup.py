"""The `work.<kind>` wake-up: which outbox row was just committed, and its partition.

Whoever commits outbox rows publishes one wake-up per row: `b"<pk> <partition>"`. With the
partition in the message, the worker starts (or pokes) that partition's drain without reading
the row first. A message with the pk alone (an older writer) still works: the worker then
finds the partition from the row. Anything else wakes the sweep.
"""

from __future__ import annotations


def wake_up(pk: int, partition: str) -> bytes:
    """The message naming row `pk` of `partition`."""
    return f"{pk} {partition}".encode()


def read_wake_up(data: bytes) -> tuple[int, str | None] | None:
    """(pk, partition or None when not named), or None for a message naming no row."""
    text = data.decode(errors="replace")
    number, _, partition = text.partition(" ")
    try:
        pk = int(number)
    except ValueError:
        return None
    return pk, partition or None
