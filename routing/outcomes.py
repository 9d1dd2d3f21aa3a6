"""How a task ended, for the brand's outcome ledger (PROTOCOL.md section 8).

Every ending writes one entry; a reopen within 24 hours writes a `reopened` entry that takes
the latest resolution of that task back. A billable resolution is one resolved by the agent,
never escalated, and not reopened. This module decides the entry's kind and who resolved it,
whether a resolution is billable, and the totals over a run of entries; hashing, signing and
storing the ledger is the gateway's job.

Choices where the protocol is silent:
    * `resolved_by` is set only for `resolved` entries: for a cancel, a rejection or a
      failure "resolved by" has no meaning, and a wrong value would be worse than none.
    * A task ended by the gateway while still open is `abandoned` when it was waiting on
      the initiator (`input-required`, the protocol's idle rule) and `unresolved` otherwise
      (the brand's side left it, e.g. stuck in `working` or `submitted`).
    * In totals, a `reopened` entry takes back the latest `resolved` entry of the same task
      that no earlier `reopened` entry took back (an entry already flagged `reopened` by the
      caller counts as that same reopen, never twice); with nothing to take back it changes
      nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from routing.tasks import State

ResolvedBy = Literal["agent", "human"]


class OutcomeKind(StrEnum):
    """The `outcome` of a ledger entry."""

    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"
    CANCELED = "canceled"
    REJECTED = "rejected"
    FAILED = "failed"
    ABANDONED = "abandoned"
    REOPENED = "reopened"


_FINAL: dict[State, OutcomeKind] = {
    State.CANCELED: OutcomeKind.CANCELED,
    State.REJECTED: OutcomeKind.REJECTED,
    State.FAILED: OutcomeKind.FAILED,
    State.INPUT_REQUIRED: OutcomeKind.ABANDONED,
}


def outcome_for(
    final_state: State, resolved_by_human: bool
) -> tuple[OutcomeKind, ResolvedBy | None]:
    """The entry kind for a task that ended in `final_state`, and who resolved it.

    Args:
        final_state: The task's state when it ended (an open state means the gateway ended
            it: see the module doc).
        resolved_by_human: An operator's `resolve` completed the task.
    """
    if final_state is State.COMPLETED:
        return OutcomeKind.RESOLVED, "human" if resolved_by_human else "agent"
    return _FINAL.get(final_state, OutcomeKind.UNRESOLVED), None


@dataclass(frozen=True, slots=True)
class EntryFacts:
    """What billing needs to know about one ledger entry.

    Attributes:
        task: The task id.
        kind: The entry's outcome.
        resolved_by: Who resolved it (resolved entries only).
        escalated: The task was ever escalated before this entry.
        reopened: A later `reopened` entry took this resolution back.
    """

    task: str
    kind: OutcomeKind
    resolved_by: ResolvedBy | None = None
    escalated: bool = False
    reopened: bool = False


def is_billable(entry: EntryFacts) -> bool:
    """Resolved by the agent, never escalated, not reopened."""
    return (
        entry.kind is OutcomeKind.RESOLVED
        and entry.resolved_by == "agent"
        and not entry.escalated
        and not entry.reopened
    )


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts over a run of entries, as `GET /v1/brands/{domain}/outcomes` reports them.

    Attributes:
        by_kind: Entries per outcome kind (reopened entries included).
        resolved_by_agent: Resolutions by the agent still standing (not taken back).
        resolved_by_human: Resolutions by a human still standing.
        billable: Billable resolutions.
    """

    by_kind: dict[str, int] = field(default_factory=dict)
    resolved_by_agent: int = 0
    resolved_by_human: int = 0
    billable: int = 0


def totals(entries: Iterable[EntryFacts]) -> Totals:
    """Count entries in ledger order, letting each `reopened` take back its resolution."""
    ordered = list(entries)
    standing = [not e.reopened for e in ordered]
    latest_resolution: dict[str, list[int]] = {}
    for index, entry in enumerate(ordered):
        if entry.kind is OutcomeKind.RESOLVED:
            latest_resolution.setdefault(entry.task, []).append(index)
        elif entry.kind is OutcomeKind.REOPENED and latest_resolution.get(entry.task):
            standing[latest_resolution[entry.task].pop()] = False
    kinds = Counter(str(e.kind) for e in ordered)
    live = [e for e, ok in zip(ordered, standing, strict=True) if ok]
    resolved = [e for e in live if e.kind is OutcomeKind.RESOLVED]
    return Totals(
        by_kind={kind.value: kinds.get(kind.value, 0) for kind in OutcomeKind},
        resolved_by_agent=sum(1 for e in resolved if e.resolved_by == "agent"),
        resolved_by_human=sum(1 for e in resolved if e.resolved_by == "human"),
        billable=sum(1 for e in live if is_billable(e)),
    )
