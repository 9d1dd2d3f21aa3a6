"""The task state machine, as one explicit table.

A task has a `state` (A2A's set) and a `control` (`agent` or `human`, PROTOCOL.md section 7).
Every envelope (and every operator action) is an `act` sent by one `side` of the task. The
table `TABLE` lists every allowed (state, control, act, side) and what it leads to; anything
not in it is refused. Keeping it as one literal table means a reviewer reads the whole
behaviour in one screen and a test can walk every cell.

Sides:
    initiator  the party that opened the task (usually a personal agent);
    responder  the brand agent the task was routed to;
    operator   a human at the brand, acting through the gateway (which signs for them);
    gateway    the gateway itself (only `status`).

Choices made where PROTOCOL.md is silent (each one is a row or a rule below):
    * A task starts only with the initiator's `say` (state `None` means "no task yet"); it
      opens `submitted` under agent control whatever control value the caller passes.
    * The initiator's `say` moves `input-required` and `auth-required` to `working` (the
      initiator answered); on `submitted` and `working` it keeps the state, since the
      responder has not picked the task up or is already on it. Control never changes on an
      initiator message: a person writing does not take a task from the brand's humans.
    * The initiator may `cancel` any open task under either control.
    * `confirm` is accepted only on `completed` (effect `confirmed`, state kept); it may be
      repeated, which is harmless. On another open state it is `invalid_transition` (there
      is nothing to confirm yet); on another final state the task is closed.
    * Reopening: the initiator's `say` on a `completed` task within `reopen_window` (24 h by
      default, inclusive) of `completed_at` moves it back to `working` under **agent**
      control with effect `reopened`. Agent control, because the escalation that a human
      may have resolved is over and no operator is watching the task any more: handing it
      to `human` would leave it with nobody. If the person still needs a human, the usual
      triggers (or the agent's `escalate`) open a new escalation. After the window, and on
      `failed`, `canceled` and `rejected`, every act is `task_closed`.
    * The brand agent (responder) may `escalate` from any open state; the state is kept,
      control becomes `human`, effect `escalation_requested`. It may `reject` or `fail` at
      any open state, not only before work starts.
    * While control is `human` the brand agent gets `under_human_control` for every act.
    * Operators act only while control is `human`: `say`, `ask`, `resolve`, and `handback`
      (not a wire act: the gateway's operator endpoint). `resolve` by an operator completes
      the task and leaves control `human`, the record that a person ended it. Operators do
      not `reject`, `fail` or `escalate`. An operator acting under agent control gets
      `invalid_transition` (they must have an escalation to work on).
    * `status` comes only from the gateway; it never changes state or control and is valid
      on every existing task, final ones included (it tells parties what happened).
      `status` from anyone else, and any act sent by a side that may not send it, is
      `invalid_transition`.
    * Final states are checked before control: an ended task is `task_closed` even for a
      brand agent while control was `human`.

Effects tell the gateway what else to do: `opened`, `reopened` (outcome ledger entry),
`escalation_requested` (open an escalation, reason `agent_request`), `handed_back` (close the
escalation, tell the brand agent), `confirmed`, `ended` (outcome ledger entry), or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from routing.errors import InvalidTransition, TaskClosed, UnderHumanControl


class State(StrEnum):
    """A task's state: A2A's set, spelled as on the wire."""

    SUBMITTED = "submitted"
    WORKING = "working"
    INPUT_REQUIRED = "input-required"
    AUTH_REQUIRED = "auth-required"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    REJECTED = "rejected"


TERMINAL: frozenset[State] = frozenset(
    {State.COMPLETED, State.FAILED, State.CANCELED, State.REJECTED}
)
OPEN: frozenset[State] = frozenset(State) - TERMINAL


class Control(StrEnum):
    """Who answers for the brand: its agent, or its humans after an escalation."""

    AGENT = "agent"
    HUMAN = "human"


class Side(StrEnum):
    """Which party of a task performs an act."""

    INITIATOR = "initiator"
    RESPONDER = "responder"
    OPERATOR = "operator"
    GATEWAY = "gateway"


class Act(StrEnum):
    """The wire acts of PROTOCOL.md section 3, plus the operator's `handback`."""

    SAY = "say"
    ASK = "ask"
    RESOLVE = "resolve"
    ESCALATE = "escalate"
    REJECT = "reject"
    FAIL = "fail"
    CANCEL = "cancel"
    CONFIRM = "confirm"
    STATUS = "status"
    HANDBACK = "handback"


# Which side may ever send which act (the "who may send it" column of the protocol).
SENDABLE: Mapping[Side, frozenset[Act]] = MappingProxyType(
    {
        Side.INITIATOR: frozenset({Act.SAY, Act.CANCEL, Act.CONFIRM}),
        Side.RESPONDER: frozenset(
            {Act.SAY, Act.ASK, Act.RESOLVE, Act.ESCALATE, Act.REJECT, Act.FAIL}
        ),
        Side.OPERATOR: frozenset({Act.SAY, Act.ASK, Act.RESOLVE, Act.HANDBACK}),
        Side.GATEWAY: frozenset({Act.STATUS}),
    }
)


@dataclass(frozen=True, slots=True)
class Step:
    """Where an act leads: the task's new state and control, and what else must happen."""

    state: State
    control: Control
    effect: str | None = None


# Short names so that each row of the table fits on one line.
_SUB, _WRK, _INP, _AUT = State.SUBMITTED, State.WORKING, State.INPUT_REQUIRED, State.AUTH_REQUIRED
_COM, _FLD, _CAN, _REJ = State.COMPLETED, State.FAILED, State.CANCELED, State.REJECTED
_AG, _HU = Control.AGENT, Control.HUMAN
_INI, _RSP, _OPR, _GW = Side.INITIATOR, Side.RESPONDER, Side.OPERATOR, Side.GATEWAY

Key = tuple[State | None, Control, str, Side]

TABLE: Mapping[Key, Step] = MappingProxyType(
    {
        # --- a new task: only the initiator's say ------------------------------------------
        (None, _AG, Act.SAY, _INI): Step(_SUB, _AG, "opened"),
        (None, _HU, Act.SAY, _INI): Step(_SUB, _AG, "opened"),
        # --- initiator say: answers move input/auth-required on; control is kept ------------
        (_SUB, _AG, Act.SAY, _INI): Step(_SUB, _AG),
        (_SUB, _HU, Act.SAY, _INI): Step(_SUB, _HU),
        (_WRK, _AG, Act.SAY, _INI): Step(_WRK, _AG),
        (_WRK, _HU, Act.SAY, _INI): Step(_WRK, _HU),
        (_INP, _AG, Act.SAY, _INI): Step(_WRK, _AG),
        (_INP, _HU, Act.SAY, _INI): Step(_WRK, _HU),
        (_AUT, _AG, Act.SAY, _INI): Step(_WRK, _AG),
        (_AUT, _HU, Act.SAY, _INI): Step(_WRK, _HU),
        # --- initiator cancel: any open task ------------------------------------------------
        (_SUB, _AG, Act.CANCEL, _INI): Step(_CAN, _AG, "ended"),
        (_SUB, _HU, Act.CANCEL, _INI): Step(_CAN, _HU, "ended"),
        (_WRK, _AG, Act.CANCEL, _INI): Step(_CAN, _AG, "ended"),
        (_WRK, _HU, Act.CANCEL, _INI): Step(_CAN, _HU, "ended"),
        (_INP, _AG, Act.CANCEL, _INI): Step(_CAN, _AG, "ended"),
        (_INP, _HU, Act.CANCEL, _INI): Step(_CAN, _HU, "ended"),
        (_AUT, _AG, Act.CANCEL, _INI): Step(_CAN, _AG, "ended"),
        (_AUT, _HU, Act.CANCEL, _INI): Step(_CAN, _HU, "ended"),
        # --- initiator on a completed task: confirm, or reopen (within the window) ----------
        (_COM, _AG, Act.CONFIRM, _INI): Step(_COM, _AG, "confirmed"),
        (_COM, _HU, Act.CONFIRM, _INI): Step(_COM, _HU, "confirmed"),
        (_COM, _AG, Act.SAY, _INI): Step(_WRK, _AG, "reopened"),
        (_COM, _HU, Act.SAY, _INI): Step(_WRK, _AG, "reopened"),
        # --- brand agent, under agent control --------------------------------------------
        (_SUB, _AG, Act.SAY, _RSP): Step(_WRK, _AG),
        (_SUB, _AG, Act.ASK, _RSP): Step(_INP, _AG),
        (_SUB, _AG, Act.RESOLVE, _RSP): Step(_COM, _AG, "ended"),
        (_SUB, _AG, Act.ESCALATE, _RSP): Step(_SUB, _HU, "escalation_requested"),
        (_SUB, _AG, Act.REJECT, _RSP): Step(_REJ, _AG, "ended"),
        (_SUB, _AG, Act.FAIL, _RSP): Step(_FLD, _AG, "ended"),
        (_WRK, _AG, Act.SAY, _RSP): Step(_WRK, _AG),
        (_WRK, _AG, Act.ASK, _RSP): Step(_INP, _AG),
        (_WRK, _AG, Act.RESOLVE, _RSP): Step(_COM, _AG, "ended"),
        (_WRK, _AG, Act.ESCALATE, _RSP): Step(_WRK, _HU, "escalation_requested"),
        (_WRK, _AG, Act.REJECT, _RSP): Step(_REJ, _AG, "ended"),
        (_WRK, _AG, Act.FAIL, _RSP): Step(_FLD, _AG, "ended"),
        (_INP, _AG, Act.SAY, _RSP): Step(_WRK, _AG),
        (_INP, _AG, Act.ASK, _RSP): Step(_INP, _AG),
        (_INP, _AG, Act.RESOLVE, _RSP): Step(_COM, _AG, "ended"),
        (_INP, _AG, Act.ESCALATE, _RSP): Step(_INP, _HU, "escalation_requested"),
        (_INP, _AG, Act.REJECT, _RSP): Step(_REJ, _AG, "ended"),
        (_INP, _AG, Act.FAIL, _RSP): Step(_FLD, _AG, "ended"),
        (_AUT, _AG, Act.SAY, _RSP): Step(_WRK, _AG),
        (_AUT, _AG, Act.ASK, _RSP): Step(_INP, _AG),
        (_AUT, _AG, Act.RESOLVE, _RSP): Step(_COM, _AG, "ended"),
        (_AUT, _AG, Act.ESCALATE, _RSP): Step(_AUT, _HU, "escalation_requested"),
        (_AUT, _AG, Act.REJECT, _RSP): Step(_REJ, _AG, "ended"),
        (_AUT, _AG, Act.FAIL, _RSP): Step(_FLD, _AG, "ended"),
        # --- operators, under human control ----------------------------------------------
        (_SUB, _HU, Act.SAY, _OPR): Step(_WRK, _HU),
        (_SUB, _HU, Act.ASK, _OPR): Step(_INP, _HU),
        (_SUB, _HU, Act.RESOLVE, _OPR): Step(_COM, _HU, "ended"),
        (_SUB, _HU, Act.HANDBACK, _OPR): Step(_SUB, _AG, "handed_back"),
        (_WRK, _HU, Act.SAY, _OPR): Step(_WRK, _HU),
        (_WRK, _HU, Act.ASK, _OPR): Step(_INP, _HU),
        (_WRK, _HU, Act.RESOLVE, _OPR): Step(_COM, _HU, "ended"),
        (_WRK, _HU, Act.HANDBACK, _OPR): Step(_WRK, _AG, "handed_back"),
        (_INP, _HU, Act.SAY, _OPR): Step(_WRK, _HU),
        (_INP, _HU, Act.ASK, _OPR): Step(_INP, _HU),
        (_INP, _HU, Act.RESOLVE, _OPR): Step(_COM, _HU, "ended"),
        (_INP, _HU, Act.HANDBACK, _OPR): Step(_INP, _AG, "handed_back"),
        (_AUT, _HU, Act.SAY, _OPR): Step(_WRK, _HU),
        (_AUT, _HU, Act.ASK, _OPR): Step(_INP, _HU),
        (_AUT, _HU, Act.RESOLVE, _OPR): Step(_COM, _HU, "ended"),
        (_AUT, _HU, Act.HANDBACK, _OPR): Step(_AUT, _AG, "handed_back"),
        # --- the gateway's status: on every existing task, changes nothing ------------------
        (_SUB, _AG, Act.STATUS, _GW): Step(_SUB, _AG),
        (_SUB, _HU, Act.STATUS, _GW): Step(_SUB, _HU),
        (_WRK, _AG, Act.STATUS, _GW): Step(_WRK, _AG),
        (_WRK, _HU, Act.STATUS, _GW): Step(_WRK, _HU),
        (_INP, _AG, Act.STATUS, _GW): Step(_INP, _AG),
        (_INP, _HU, Act.STATUS, _GW): Step(_INP, _HU),
        (_AUT, _AG, Act.STATUS, _GW): Step(_AUT, _AG),
        (_AUT, _HU, Act.STATUS, _GW): Step(_AUT, _HU),
        (_COM, _AG, Act.STATUS, _GW): Step(_COM, _AG),
        (_COM, _HU, Act.STATUS, _GW): Step(_COM, _HU),
        (_FLD, _AG, Act.STATUS, _GW): Step(_FLD, _AG),
        (_FLD, _HU, Act.STATUS, _GW): Step(_FLD, _HU),
        (_CAN, _AG, Act.STATUS, _GW): Step(_CAN, _AG),
        (_CAN, _HU, Act.STATUS, _GW): Step(_CAN, _HU),
        (_REJ, _AG, Act.STATUS, _GW): Step(_REJ, _AG),
        (_REJ, _HU, Act.STATUS, _GW): Step(_REJ, _HU),
    }
)

REOPEN_WINDOW = timedelta(hours=24)
_ACT_NAMES = frozenset(a.value for a in Act)


def transition(
    state: State | None,
    control: Control,
    act: str,
    side: Side,
    *,
    completed_at: datetime | None = None,
    now: datetime | None = None,
    reopen_window: timedelta = REOPEN_WINDOW,
) -> Step:
    """Decide what `act` by `side` does to a task in (`state`, `control`).

    Args:
        state: The task's state, or None when the envelope would open a new task.
        control: Who holds the task now (ignored for a new task).
        act: The act as written on the envelope (`say`, `ask`, ...) or `handback`.
        side: Which party sends it.
        completed_at: When the task completed; needed only to decide a reopen.
        now: The gateway's clock; needed only to decide a reopen.
        reopen_window: How long after completion the initiator may reopen.

    Returns:
        The new state and control, and the effect the gateway must carry out.

    Raises:
        InvalidTransition: The side may not send this act, or not in this state.
        TaskClosed: The task has ended (for a reopen: the window has passed).
        UnderHumanControl: The brand agent acted while the brand's humans hold the task.
        ValueError: A reopen was asked for without `completed_at` and `now` (a caller bug).
    """
    step = TABLE.get((state, control, act, side))
    if step is not None:
        if step.effect == "reopened":
            _check_reopen_window(completed_at, now, reopen_window)
        return step
    raise _refusal(state, control, act, side)


def _check_reopen_window(
    completed_at: datetime | None, now: datetime | None, window: timedelta
) -> None:
    if completed_at is None or now is None:
        raise ValueError("deciding a reopen needs both completed_at and now")
    if now - completed_at > window:
        hours = window.total_seconds() / 3600
        raise TaskClosed(
            f"This task completed at {completed_at.isoformat()}, more than {hours:g} hours ago, "
            "so it can no longer be reopened. Start a new task (send with task null to the "
            "brand's domain or agent).",
            completed_at=completed_at.isoformat(),
            reopen_window_s=window.total_seconds(),
        )


def _refusal(
    state: State | None, control: Control, act: str, side: Side
) -> InvalidTransition | TaskClosed | UnderHumanControl:
    """Explain why a cell is absent from the table, choosing the most useful error."""
    facts: dict[str, object] = {
        "state": None if state is None else str(state),
        "control": str(control),
        "act": act,
        "side": str(side),
    }
    if act not in _ACT_NAMES:
        known = ", ".join(a.value for a in Act if a is not Act.HANDBACK)
        return InvalidTransition(f"Unknown act {act!r}; use one of: {known}.", **facts)
    if act not in SENDABLE[side]:
        allowed = ", ".join(sorted(a.value for a in SENDABLE[side]))
        return InvalidTransition(
            f"The {side} of a task may not send {act!r}; it may send: {allowed}.", **facts
        )
    if state is None:
        if act == Act.STATUS:
            return InvalidTransition("A status envelope needs an existing task.", **facts)
        return InvalidTransition(
            f"A task starts only with 'say' from its initiator; to send {act!r}, name an "
            "existing task in 'task'.",
            **facts,
        )
    if state in TERMINAL:
        return TaskClosed(
            f"This task has ended ({state}); nothing more can be sent on it. Start a new task "
            "(task null) to continue.",
            **facts,
        )
    if side is Side.RESPONDER and control is Control.HUMAN:
        return UnderHumanControl(
            "The brand's operators have taken over this task; the brand agent may act on it "
            "again after an operator hands it back.",
            **facts,
        )
    if side is Side.OPERATOR and control is Control.AGENT:
        return InvalidTransition(
            "This task is under the brand agent's control; operators act only on escalated "
            "tasks. Wait for an escalation, or ask the brand agent to escalate.",
            **facts,
        )
    if act == Act.CONFIRM:
        return InvalidTransition(
            f"Only a completed task can be confirmed; this one is {state}.", **facts
        )
    return InvalidTransition(f"{act!r} is not allowed while the task is {state}.", **facts)
