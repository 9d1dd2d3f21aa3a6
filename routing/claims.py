"""The life of one escalation as operators work it (PROTOCOL.md section 7).

    open --claim--> claimed --resolve--> resolved
      ^               |  \\--handback--> handed_back
      +---release-----+

A claim is exclusive: only its holder may reply, resolve, hand back or release. A second
claim by someone else is `escalation_conflict` naming the holder, so the second operator
knows whom to talk to. The gateway applies the matching task act (`routing.tasks`) in the
same transaction; this module decides only who may do what to the escalation.

Choices where the protocol is silent: claiming again by the holder is a harmless repeat
(the same answer), so a retried request after a lost response does not fail; replying needs
a claim (two operators answering one customer at once is what claims prevent); a resolved or
handed-back escalation is closed for every action.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from routing.errors import EscalationConflict

WorkAction = Literal["claim", "release", "reply", "resolve", "handback"]


class EscalationState(StrEnum):
    """Where an escalation is in its life."""

    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    HANDED_BACK = "handed_back"


CLOSED = frozenset({EscalationState.RESOLVED, EscalationState.HANDED_BACK})

_AFTER: dict[str, EscalationState] = {
    "reply": EscalationState.CLAIMED,
    "resolve": EscalationState.RESOLVED,
    "handback": EscalationState.HANDED_BACK,
}


def work(
    state: EscalationState, holder: str | None, action: WorkAction, operator: str
) -> tuple[EscalationState, str | None]:
    """Apply an operator's `action` to an escalation in `state` claimed by `holder`.

    Args:
        state: The escalation's state.
        holder: The operator address holding the claim, if claimed.
        action: What the operator does.
        operator: The acting operator's address.

    Returns:
        The new state and holder.

    Raises:
        EscalationConflict: Closed escalation, someone else's claim, or no claim yet.
    """
    facts: dict[str, object] = {"state": str(state), "holder": holder, "action": action}
    if state in CLOSED:
        raise EscalationConflict(
            f"This escalation is already {state.value.replace('_', ' ')}; nothing more can be "
            "done on it. A new escalation opens if the task needs a person again.",
            **facts,
        )
    if state is EscalationState.CLAIMED and holder != operator:
        raise EscalationConflict(
            f"{holder} has claimed this escalation; ask them, or wait until they release it.",
            **facts,
        )
    if action == "claim":
        return EscalationState.CLAIMED, operator
    if state is EscalationState.OPEN:
        raise EscalationConflict(
            f"Claim this escalation before you {action} it (POST …/claim).", **facts
        )
    if action == "release":
        return EscalationState.OPEN, None
    return _AFTER[action], holder
