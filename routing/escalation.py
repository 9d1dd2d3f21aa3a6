"""When a task must go to a person: the escalation triggers, as pure rules.

PROTOCOL.md section 7 lists six reasons. This module decides which one (if any) fires for a
message, a timer or a delivery give-up; the gateway records the escalation and notifies. The
rules are a brand's `EscalationRules` (part of its policy document); the language layer's
`Signals` come in already computed, because asking a model is I/O and this package does none.

At most one trigger fires per event. For a message the precedence is:

    1. agent_request    the brand agent sent `escalate` (always on: the agent knows best
                        when it cannot go on);
    2. human_requested  the initiator asked for a person (an explicit wish beats anything
                        inferred);
    3. policy_rule      a keyword, then a topic, that the brand named (the brand's explicit
                        rules beat inferred mood);
    4. frustration      the initiator sounds frustrated;
    5. stalled          too many initiator turns without progress (the weakest evidence).

Only the initiator's `say` is read for 2-5: the brand agent's own words mentioning "refund"
must not escalate its task, and operators already are the humans. Nothing fires while the
task is already escalated. The other two reasons come from clocks and delivery:
`evaluate_timeout` (no agent reply within the brand's limit, reason `stalled`) and
`unreachable` (delivery gave up, reason `agent_unreachable`).

Matching choices: a keyword matches as a whole word or phrase, case-insensitively ("refund"
does not match "refunded"); a topic is looser: every word of the topic must start a word of
the text ("refund" matches "refunds" and "refunded", "legal action" matches "taking legal
action now"). Signals count only at or above `signal_min_confidence`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, get_args

from routing.language import Signals
from routing.tasks import Act, Side

Reason = Literal[
    "agent_request", "human_requested", "policy_rule", "frustration", "stalled", "agent_unreachable"
]
Priority = Literal["low", "normal", "high", "urgent"]
REASONS: tuple[Reason, ...] = get_args(Reason)
PRIORITIES: tuple[Priority, ...] = get_args(Priority)

_EXCERPT = 160


@dataclass(frozen=True, slots=True)
class Priorities:
    """The priority each reason's escalation gets; a brand may change any of them.

    Defaults: a silent agent is urgent (nobody is answering the person at all); a person
    asking for a human or sounding frustrated is high; the rest are normal.
    """

    agent_request: Priority = "normal"
    human_requested: Priority = "high"
    policy_rule: Priority = "normal"
    frustration: Priority = "high"
    stalled: Priority = "normal"
    agent_unreachable: Priority = "urgent"

    def of(self, reason: Reason) -> Priority:
        """The priority for `reason`."""
        value: Priority = getattr(self, reason)
        return value


@dataclass(frozen=True, slots=True)
class EscalationRules:
    """A brand's escalation settings (defaults are what a brand gets without a policy).

    Attributes:
        human_requested: Escalate when the initiator asks for a person.
        frustration: Escalate when the initiator sounds frustrated.
        keywords: Words or phrases that escalate on sight (matched as whole words).
        topics: Subjects the brand wants humans for (matched loosely, see the module doc).
        max_turns_without_progress: Initiator turns without progress before `stalled`;
            0 turns the rule off.
        agent_reply_timeout_s: Seconds the brand agent has to answer the initiator before
            `stalled`; None turns the rule off.
        unclaimed_after_s: Seconds an escalation may stay open before `escalation.unclaimed`.
        abandon_after_s: Seconds a task may idle in `input-required` before it is abandoned.
        signal_min_confidence: The language layer's confidence needed for its signals.
        priorities: The priority per reason.
    """

    human_requested: bool = True
    frustration: bool = True
    keywords: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    max_turns_without_progress: int = 12
    agent_reply_timeout_s: int | None = 600
    unclaimed_after_s: int = 600
    abandon_after_s: int = 7 * 24 * 3600
    signal_min_confidence: float = 0.5
    priorities: Priorities = field(default_factory=Priorities)


@dataclass(frozen=True, slots=True)
class Trigger:
    """Why an escalation opens: the reason code, a sentence for the human, the rule that fired."""

    reason: Reason
    text: str
    priority: Priority
    rule: str


def evaluate_message(
    *,
    side: Side | str,
    act: str,
    text: str,
    signals: Signals | None,
    turns_without_progress: int,
    rules: EscalationRules,
    already_escalated: bool,
) -> Trigger | None:
    """The trigger an accepted message fires, if any, in the module's precedence order.

    Args:
        side: Who sent the message.
        act: Its act.
        text: Its `body.text` (for `escalate`, the agent's reason).
        signals: The language layer's reading of the text (None when it was not asked).
        turns_without_progress: The task's count after this message (`count_turn`).
        rules: The brand's escalation rules.
        already_escalated: The task is under human control already.

    Returns:
        One trigger, or None.
    """
    if already_escalated:
        return None
    if side == Side.RESPONDER and act == Act.ESCALATE:
        said = text.strip()
        return _fire(
            rules,
            "agent_request",
            f"The brand agent asked for a person: {_quote(said)}"
            if said
            else "The brand agent asked for a person without giving a reason.",
            "act:escalate",
        )
    if side != Side.INITIATOR or act != Act.SAY:
        return None
    confident = signals is not None and signals.confidence >= rules.signal_min_confidence
    if rules.human_requested and confident and signals is not None and signals.wants_human:
        return _fire(
            rules,
            "human_requested",
            f"The initiator asked for a person ({signals.why}): {_quote(text)}",
            "signals.wants_human",
        )
    for keyword in rules.keywords:
        if _has_phrase(text, keyword):
            return _fire(
                rules,
                "policy_rule",
                f"The message contains the keyword {keyword!r}: {_quote(text)}",
                f"keyword:{keyword}",
            )
    for topic in rules.topics:
        if _mentions_topic(text, topic):
            return _fire(
                rules,
                "policy_rule",
                f"The message is about {topic!r}: {_quote(text)}",
                f"topic:{topic}",
            )
    if rules.frustration and confident and signals is not None and signals.frustrated:
        return _fire(
            rules,
            "frustration",
            f"The initiator sounds frustrated ({signals.why}): {_quote(text)}",
            "signals.frustrated",
        )
    limit = rules.max_turns_without_progress
    if limit > 0 and turns_without_progress >= limit:
        return _fire(
            rules,
            "stalled",
            f"{turns_without_progress} messages from the initiator without progress "
            f"(the brand's limit is {limit}).",
            f"max_turns_without_progress={limit}",
        )
    return None


def count_turn(previous: int, *, side: Side | str, act: str, effect: str | None) -> int:
    """The task's turns-without-progress count after an accepted act.

    A turn is a `say` from the initiator: the person writing again without their issue being
    resolved. The count restarts when the task opens or is reopened (a fresh start) and when
    an operator hands it back (the human's work counts as progress).

    Args:
        previous: The count before this act (0 for a new task).
        side: Who sent the act.
        act: The act.
        effect: The effect `routing.tasks.transition` returned for it.
    """
    if effect == "handed_back":
        return 0
    if effect in ("opened", "reopened"):
        return 1
    if side == Side.INITIATOR and act == Act.SAY:
        return previous + 1
    return previous


def reply_deadline(asked_at: datetime, rules: EscalationRules) -> datetime | None:
    """When the brand agent's silence after an initiator message becomes `stalled`.

    The gateway arms a durable timer for this instant when the initiator writes on a task
    under agent control; None means the brand switched the rule off.
    """
    if rules.agent_reply_timeout_s is None:
        return None
    return asked_at + timedelta(seconds=rules.agent_reply_timeout_s)


def evaluate_timeout(
    *,
    initiator_at: datetime,
    agent_reply_at: datetime | None,
    now: datetime,
    rules: EscalationRules,
    already_escalated: bool,
    task_open: bool = True,
) -> Trigger | None:
    """Has the brand agent left the initiator's last message unanswered for too long?

    Called when the reply timer fires (and safe to call at any time: it re-checks the facts,
    so a timer that fires late, twice, or after the agent did reply decides correctly).

    Args:
        initiator_at: When the initiator's latest message was accepted.
        agent_reply_at: When the responder side last wrote on the task, if ever.
        now: The gateway's clock.
        rules: The brand's escalation rules.
        already_escalated: The task is under human control already.
        task_open: False once the task has ended: nobody waits on an ended task.
    """
    deadline = reply_deadline(initiator_at, rules)
    if deadline is None or already_escalated or not task_open:
        return None
    if agent_reply_at is not None and agent_reply_at >= initiator_at:
        return None
    if now < deadline:
        return None
    waited = int((now - initiator_at).total_seconds())
    return _fire(
        rules,
        "stalled",
        f"The brand agent has not answered the initiator for {waited} s "
        f"(the brand's limit is {rules.agent_reply_timeout_s} s).",
        f"agent_reply_timeout_s={rules.agent_reply_timeout_s}",
    )


def unreachable(
    *,
    agent: str,
    attempts: int,
    last_error: str,
    rules: EscalationRules,
    already_escalated: bool,
) -> Trigger | None:
    """Delivery to the brand agent gave up after its retry budget: a person must answer.

    Always on (a brand cannot opt out of someone answering when its agent is gone), except
    when humans already hold the task.
    """
    if already_escalated:
        return None
    return _fire(
        rules,
        "agent_unreachable",
        f"Delivery to {agent} failed {attempts} times and was given up; last error: {last_error}.",
        "delivery.retry_budget",
    )


def unclaimed_deadline(opened_at: datetime, rules: EscalationRules) -> datetime:
    """When an open escalation nobody claimed announces `escalation.unclaimed`."""
    return opened_at + timedelta(seconds=rules.unclaimed_after_s)


def abandon_deadline(idle_since: datetime, rules: EscalationRules) -> datetime:
    """When a task idle in `input-required` since `idle_since` ends as `abandoned`."""
    return idle_since + timedelta(seconds=rules.abandon_after_s)


def _fire(rules: EscalationRules, reason: Reason, text: str, rule: str) -> Trigger:
    return Trigger(reason=reason, text=text, priority=rules.priorities.of(reason), rule=rule)


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > _EXCERPT:
        flat = flat[: _EXCERPT - 1].rstrip() + "…"
    return f"“{flat}”"


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.casefold())


def _has_phrase(text: str, phrase: str) -> bool:
    wanted = _words(phrase)
    if not wanted:
        return False
    have = _words(text)
    n = len(wanted)
    return any(have[i : i + n] == wanted for i in range(len(have) - n + 1))


def _mentions_topic(text: str, topic: str) -> bool:
    wanted = _words(topic)
    if not wanted:
        return False
    have = _words(text)
    return all(any(word.startswith(stem) for word in have) for stem in wanted)
