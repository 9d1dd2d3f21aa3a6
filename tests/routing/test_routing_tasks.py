"""The task state machine: every cell of (state, control, act, side), reopen windows, details."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from routing.errors import InvalidTransition, RoutingError, TaskClosed, UnderHumanControl
from routing.tasks import TABLE, TERMINAL, Act, Control, Side, State, Step, transition

COMPLETED_AT = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
WITHIN = COMPLETED_AT + timedelta(hours=23, minutes=59)
AFTER = COMPLETED_AT + timedelta(hours=24, seconds=1)

ALL_STATES: list[State | None] = [None, *State]
ALL_ACTS = [*Act, "shout"]  # one act nobody knows, to prove it is refused everywhere


def spec(state: State | None, control: Control, act: str, side: Side) -> Step | str:
    """An independent reading of PROTOCOL.md: a Step, or the error code expected.

    Written as rules per side (the protocol's "who may send it" view), not as rows, so that a
    mistake in the module's table does not repeat itself here.
    """
    open_states = {"submitted", "working", "input-required", "auth-required"}
    may_send = {
        "initiator": {"say", "cancel", "confirm"},
        "responder": {"say", "ask", "resolve", "escalate", "reject", "fail"},
        "operator": {"say", "ask", "resolve", "handback"},
        "gateway": {"status"},
    }
    if act not in may_send[side.value]:
        return "invalid_transition"
    if state is None:
        if side is Side.INITIATOR and act == "say":
            return Step(State.SUBMITTED, Control.AGENT, "opened")
        return "invalid_transition"
    if act == "status":
        return Step(state, control, None)
    if state.value not in open_states:
        if state is State.COMPLETED and side is Side.INITIATOR and act == "confirm":
            return Step(state, control, "confirmed")
        if state is State.COMPLETED and side is Side.INITIATOR and act == "say":
            return Step(State.WORKING, Control.AGENT, "reopened")
        return "task_closed"
    if side is Side.INITIATOR:
        if act == "cancel":
            return Step(State.CANCELED, control, "ended")
        if act == "confirm":
            return "invalid_transition"
        moved = {"input-required": State.WORKING, "auth-required": State.WORKING}
        return Step(moved.get(state.value, state), control, None)
    if side is Side.RESPONDER:
        if control is Control.HUMAN:
            return "under_human_control"
        if act == "escalate":
            return Step(state, Control.HUMAN, "escalation_requested")
        ends = {"resolve": State.COMPLETED, "reject": State.REJECTED, "fail": State.FAILED}
        if act in ends:
            return Step(ends[act], control, "ended")
        return Step(State.INPUT_REQUIRED if act == "ask" else State.WORKING, control, None)
    # operator
    if control is Control.AGENT:
        return "invalid_transition"
    if act == "handback":
        return Step(state, Control.AGENT, "handed_back")
    if act == "resolve":
        return Step(State.COMPLETED, Control.HUMAN, "ended")
    return Step(State.INPUT_REQUIRED if act == "ask" else State.WORKING, control, None)


CELLS = list(itertools.product(ALL_STATES, Control, ALL_ACTS, Side))


@pytest.mark.parametrize(("state", "control", "act", "side"), CELLS)
def test_every_cell_matches_the_protocol_reading(
    state: State | None, control: Control, act: str, side: Side
) -> None:
    """Each of the 9 x 2 x 11 x 4 cells behaves as the independent spec says."""
    expected = spec(state, control, act, side)
    if isinstance(expected, Step):
        got = transition(state, control, act, side, completed_at=COMPLETED_AT, now=WITHIN)
        assert got == expected
    else:
        with pytest.raises(RoutingError) as caught:
            transition(state, control, act, side, completed_at=COMPLETED_AT, now=WITHIN)
        assert caught.value.code == expected
        assert caught.value.detail  # a person gets a sentence to act on


def test_walk_covers_the_whole_table() -> None:
    """Every row of TABLE is an allowed cell of the walk, and nothing else is allowed."""
    allowed = {cell for cell in CELLS if isinstance(spec(*cell), Step)}
    assert set(TABLE) == allowed
    assert len(CELLS) == 9 * 2 * 11 * 4


def test_plain_strings_work_as_acts() -> None:
    """The gateway passes the envelope's act as a str, not an Act member."""
    step = transition(State.WORKING, Control.AGENT, "ask", Side.RESPONDER)
    assert step == Step(State.INPUT_REQUIRED, Control.AGENT, None)


@pytest.mark.parametrize("control", list(Control))
def test_reopen_after_the_window_is_closed(control: Control) -> None:
    """A say one second past 24 h after completion is task_closed, naming the time."""
    with pytest.raises(TaskClosed) as caught:
        transition(
            State.COMPLETED, control, "say", Side.INITIATOR, completed_at=COMPLETED_AT, now=AFTER
        )
    assert "2026-11-26T06:00:00+00:00" in caught.value.detail
    assert "new task" in caught.value.detail


def test_reopen_at_exactly_the_window_edge_is_allowed() -> None:
    """'Within 24 hours' includes the 24th hour's last instant."""
    step = transition(
        State.COMPLETED,
        Control.HUMAN,
        "say",
        Side.INITIATOR,
        completed_at=COMPLETED_AT,
        now=COMPLETED_AT + timedelta(hours=24),
    )
    assert step == Step(State.WORKING, Control.AGENT, "reopened")


def test_reopen_window_is_configurable() -> None:
    """A shorter window closes the task sooner."""
    with pytest.raises(TaskClosed):
        transition(
            State.COMPLETED,
            Control.AGENT,
            "say",
            Side.INITIATOR,
            completed_at=COMPLETED_AT,
            now=COMPLETED_AT + timedelta(hours=2),
            reopen_window=timedelta(hours=1),
        )


def test_reopen_without_times_is_a_caller_bug() -> None:
    """Deciding a reopen without the clock is a programming error, not a protocol refusal."""
    with pytest.raises(ValueError, match="completed_at"):
        transition(State.COMPLETED, Control.AGENT, "say", Side.INITIATOR)


def test_under_human_control_detail_says_how_it_ends() -> None:
    """The brand agent is told that a handback gives the task back."""
    with pytest.raises(UnderHumanControl) as caught:
        transition(State.WORKING, Control.HUMAN, "say", Side.RESPONDER)
    assert "hands it back" in caught.value.detail
    assert caught.value.fields["control"] == "human"


def test_wrong_side_detail_lists_what_it_may_send() -> None:
    """An initiator sending `resolve` learns which acts it may send."""
    with pytest.raises(InvalidTransition) as caught:
        transition(State.WORKING, Control.AGENT, "resolve", Side.INITIATOR)
    assert "cancel, confirm, say" in caught.value.detail


def test_terminal_set_is_the_four_final_states() -> None:
    """TERMINAL holds exactly the A2A final states."""
    assert {s.value for s in TERMINAL} == {"completed", "failed", "canceled", "rejected"}


def test_a_conversation_walks_through_the_table() -> None:
    """A whole escalated conversation, step by step, ends completed by a human."""
    state: State | None = None
    control = Control.AGENT
    effects: list[str | None] = []
    for act, side in [
        ("say", Side.INITIATOR),
        ("ask", Side.RESPONDER),
        ("say", Side.INITIATOR),
        ("escalate", Side.RESPONDER),
        ("say", Side.OPERATOR),
        ("handback", Side.OPERATOR),
        ("resolve", Side.RESPONDER),
        ("confirm", Side.INITIATOR),
    ]:
        step = transition(state, control, act, side)
        state, control = step.state, step.control
        effects.append(step.effect)
    assert (state, control) == (State.COMPLETED, Control.AGENT)
    assert effects == [
        "opened",
        None,
        None,
        "escalation_requested",
        None,
        "handed_back",
        "ended",
        "confirmed",
    ]
