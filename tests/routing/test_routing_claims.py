"""Working an escalation: exclusive claims, release, and the closing actions."""

from __future__ import annotations

import itertools

import pytest

from routing.claims import EscalationState, WorkAction, work
from routing.errors import EscalationConflict

JANE, JOHN = "jane@sonos.example", "john@sonos.example"
OPEN, CLAIMED = EscalationState.OPEN, EscalationState.CLAIMED
RESOLVED, BACK = EscalationState.RESOLVED, EscalationState.HANDED_BACK
ACTIONS: list[WorkAction] = ["claim", "release", "reply", "resolve", "handback"]

# (state, holder) x action by JANE -> (new state, new holder) or "conflict"
EXPECTED: dict[
    tuple[EscalationState, str | None, str], tuple[EscalationState, str | None] | str
] = {
    (OPEN, None, "claim"): (CLAIMED, JANE),
    (OPEN, None, "release"): "conflict",
    (OPEN, None, "reply"): "conflict",
    (OPEN, None, "resolve"): "conflict",
    (OPEN, None, "handback"): "conflict",
    (CLAIMED, JANE, "claim"): (CLAIMED, JANE),
    (CLAIMED, JANE, "release"): (OPEN, None),
    (CLAIMED, JANE, "reply"): (CLAIMED, JANE),
    (CLAIMED, JANE, "resolve"): (RESOLVED, JANE),
    (CLAIMED, JANE, "handback"): (BACK, JANE),
    **{(CLAIMED, JOHN, a): "conflict" for a in ACTIONS},
    **{(RESOLVED, JANE, a): "conflict" for a in ACTIONS},
    **{(BACK, JANE, a): "conflict" for a in ACTIONS},
}


@pytest.mark.parametrize(("state", "holder", "action"), list(EXPECTED))
def test_every_state_and_action(state: EscalationState, holder: str | None, action: str) -> None:
    """Each (state, holder, action) by jane leads where the table says, or conflicts."""
    expected = EXPECTED[(state, holder, action)]
    if expected == "conflict":
        with pytest.raises(EscalationConflict):
            work(state, holder, action, JANE)  # type: ignore[arg-type]
    else:
        assert work(state, holder, action, JANE) == expected  # type: ignore[arg-type]


def test_table_covers_every_state_and_action() -> None:
    """The expectation table has every state with every action."""
    states = {(s, a) for s, _, a in EXPECTED}
    assert states == set(itertools.product(EscalationState, ACTIONS))


def test_second_claim_names_the_holder() -> None:
    """Two operators race; the loser's error names the winner."""
    state, holder = work(OPEN, None, "claim", JANE)
    with pytest.raises(EscalationConflict) as caught:
        work(state, holder, "claim", JOHN)
    assert JANE in caught.value.detail
    assert caught.value.fields["holder"] == JANE
    assert caught.value.code == "escalation_conflict"
