"""What the outbox hands out and takes back: rows (with the delivery target read with their
claim), attempts to record, and the decoding of rows as the drivers return them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import sqlite

from gateway.store.tables import outbox

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One unit of after-commit work, as a handler receives it."""

    pk: int
    public_id: str
    kind: str
    partition: str
    payload: dict[str, Any]
    attempts: int
    task_id: str | None
    created_at: datetime
    next_attempt_at: datetime
    target: DeliveryTarget | None = None  # read with the claim, for rows naming an envelope
    # The rows leased with this one, in order, to go in the same POST (an endpoint that takes
    # ordered batches, `DeliveryTarget.max_batch`); each carries its own target.
    followers: tuple[OutboxRow, ...] = ()

    @property
    def batch(self) -> tuple[OutboxRow, ...]:
        """This row and its followers, in the partition's order."""
        return (self, *self.followers)

    @property
    def last_pk(self) -> int:
        """The last row held with this one: the next claim in line starts after it."""
        return self.followers[-1].pk if self.followers else self.pk


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """A stored envelope and its recipient's endpoint, read together for one delivery."""

    # The envelope as stored: the sender's JSON text as received (whitespace and escapes
    # included), or compact `records.dumps` text for one that came without its text.
    envelope_json: str
    agent_kind: str
    endpoint_url: str | None
    endpoint_status: str | None
    endpoint_note: str | None
    max_batch: int = 1  # envelopes one POST may carry (docs/delivery-batches.md)

    @property
    def envelope(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.envelope_json)
        return parsed


@dataclass(frozen=True, slots=True)
class AttemptWrite:
    """One attempt to record, with the row's new state."""

    at: datetime
    outcome: str
    status_code: int | None
    error: str | None
    note: str | None
    duration_ms: int
    row_status: str
    next_attempt_at: datetime
    last_error: str | None


# The columns a claim returns, in this order (`row_of` reads them).
RETURNED = (
    outbox.c.pk,
    outbox.c.public_id,
    outbox.c.kind,
    outbox.c.partition,
    outbox.c.payload,
    outbox.c.attempts,
    outbox.c.task_id,
    outbox.c.created_at,
    outbox.c.next_attempt_at,
)
RAW_RETURNED = (
    " RETURNING pk, public_id, kind, partition, payload, attempts, task_id, created_at,"
    " next_attempt_at"
)


def row_of(
    found: Sequence[Any], target: DeliveryTarget | None, times: Callable[[Any], datetime]
) -> OutboxRow:
    """An `OutboxRow` from the `RETURNED` columns; `times` turns the driver's times into
    datetimes (`as_datetime` after SQLAlchemy, which has done it; `time_out` after plain
    sqlite3, which has not)."""
    pk, public_id, kind, partition, payload_text, attempts, task_id, created, next_at = found
    return OutboxRow(
        pk=int(pk),
        public_id=public_id,
        kind=kind,
        partition=partition,
        payload=json.loads(payload_text),
        attempts=int(attempts),
        task_id=task_id,
        created_at=times(created),
        next_attempt_at=times(next_at),
        target=target,
    )


def as_datetime(value: Any) -> datetime:
    assert isinstance(value, datetime)  # the columns are NOT NULL
    return value


def envelope_pk_of(row: Sequence[Any]) -> int | None:
    """The envelope a row (as `RETURNED`) delivers, if it names one."""
    pk = json.loads(row[4]).get("envelope_pk")
    return pk if isinstance(pk, int) else None


# Plain sqlite3 gives and takes times as SQLAlchemy's SQLite dialect stores them.
_DIALECT = sqlite.dialect()
_TIME_IN = outbox.c.next_attempt_at.type._cached_bind_processor(_DIALECT)
_TIME_OUT = outbox.c.next_attempt_at.type._cached_result_processor(_DIALECT, None)


def time_in(value: datetime) -> Any:
    return value if _TIME_IN is None else _TIME_IN(value)


def time_out(value: Any) -> datetime:
    moment = value if _TIME_OUT is None else _TIME_OUT(value)
    assert isinstance(moment, datetime)  # the columns are NOT NULL
    return moment
