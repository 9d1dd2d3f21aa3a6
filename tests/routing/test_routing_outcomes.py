"""Outcome entries: kinds per final state, who resolved, billability, totals with reopens."""

from __future__ import annotations

import pytest

from routing.outcomes import EntryFacts, OutcomeKind, is_billable, outcome_for, totals
from routing.tasks import State

R, RO = OutcomeKind.RESOLVED, OutcomeKind.REOPENED


@pytest.mark.parametrize(
    ("state", "by_human", "kind", "resolved_by"),
    [
        (State.COMPLETED, False, "resolved", "agent"),
        (State.COMPLETED, True, "resolved", "human"),
        (State.CANCELED, False, "canceled", None),
        (State.REJECTED, True, "rejected", None),
        (State.FAILED, False, "failed", None),
        (State.INPUT_REQUIRED, False, "abandoned", None),
        (State.WORKING, False, "unresolved", None),
        (State.SUBMITTED, False, "unresolved", None),
        (State.AUTH_REQUIRED, False, "unresolved", None),
    ],
)
def test_outcome_for_every_state(
    state: State, by_human: bool, kind: str, resolved_by: str | None
) -> None:
    """Each state at the end maps to its ledger kind; only resolutions name who resolved."""
    assert outcome_for(state, by_human) == (kind, resolved_by)


@pytest.mark.parametrize(
    ("facts", "billable"),
    [
        (EntryFacts("t", R, "agent"), True),
        (EntryFacts("t", R, "human"), False),
        (EntryFacts("t", R, "agent", escalated=True), False),
        (EntryFacts("t", R, "agent", reopened=True), False),
        (EntryFacts("t", OutcomeKind.CANCELED), False),
        (EntryFacts("t", RO), False),
    ],
)
def test_billable_only_for_clean_agent_resolutions(facts: EntryFacts, billable: bool) -> None:
    """Billable = resolved by the agent, never escalated, not reopened."""
    assert is_billable(facts) is billable


def test_totals_take_back_reopened_resolutions() -> None:
    """A reopen cancels its task's latest resolution; the second resolution then stands."""
    entries = [
        EntryFacts("a", R, "agent"),
        EntryFacts("b", R, "agent"),
        EntryFacts("a", RO),
        EntryFacts("a", R, "agent"),
        EntryFacts("c", R, "human", escalated=True),
        EntryFacts("d", RO),  # nothing to take back
        EntryFacts("e", OutcomeKind.ABANDONED),
    ]
    result = totals(entries)
    assert result.by_kind["resolved"] == 4
    assert result.by_kind["reopened"] == 2
    assert result.by_kind["abandoned"] == 1
    assert result.by_kind["failed"] == 0
    assert (result.resolved_by_agent, result.resolved_by_human, result.billable) == (2, 1, 2)


def test_totals_do_not_double_count_a_flagged_reopen() -> None:
    """A resolution already flagged reopened and its reopen entry take back one, not two."""
    entries = [
        EntryFacts("a", R, "agent"),
        EntryFacts("a", R, "agent", reopened=True),
        EntryFacts("a", RO),
    ]
    assert totals(entries).billable == 1
