"""Escalation triggers: each reason fires from its rule, in precedence order, at most once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from routing.escalation import (
    EscalationRules,
    Priorities,
    Trigger,
    abandon_deadline,
    count_turn,
    evaluate_message,
    evaluate_timeout,
    reply_deadline,
    unclaimed_deadline,
    unreachable,
)
from routing.language import Signals
from routing.tasks import Side

CALM = Signals(wants_human=False, frustrated=False, confidence=0.9, why="calm")
WANTS = Signals(wants_human=True, frustrated=False, confidence=0.9, why="asked for an agent")
ANGRY = Signals(wants_human=False, frustrated=True, confidence=0.9, why="all caps, 'useless'")
BOTH = Signals(wants_human=True, frustrated=True, confidence=0.9, why="both")
UNSURE = Signals(wants_human=True, frustrated=True, confidence=0.2, why="maybe")
RULES = EscalationRules(keywords=("chargeback", "legal action"), topics=("refund",))


def fire(
    text: str,
    *,
    side: Side = Side.INITIATOR,
    act: str = "say",
    signals: Signals | None = CALM,
    turns: int = 1,
    rules: EscalationRules = RULES,
    escalated: bool = False,
) -> Trigger | None:
    return evaluate_message(
        side=side,
        act=act,
        text=text,
        signals=signals,
        turns_without_progress=turns,
        rules=rules,
        already_escalated=escalated,
    )


def must(trigger: Trigger | None) -> Trigger:
    assert trigger is not None
    return trigger


# (case, kwargs, expected reason or None, expected rule or None)
MESSAGE_CASES: list[tuple[str, dict[str, object], str | None, str | None]] = [
    (
        "agent escalates",
        {"side": Side.RESPONDER, "act": "escalate"},
        "agent_request",
        "act:escalate",
    ),
    (
        "agent escalates, already human",
        {"side": Side.RESPONDER, "act": "escalate", "escalated": True},
        None,
        None,
    ),
    ("person asks for a human", {"signals": WANTS}, "human_requested", "signals.wants_human"),
    (
        "human_requested switched off",
        {"signals": WANTS, "rules": replace(RULES, human_requested=False)},
        None,
        None,
    ),
    ("low confidence signals ignored", {"signals": UNSURE}, None, None),
    ("frustrated person", {"signals": ANGRY}, "frustration", "signals.frustrated"),
    (
        "frustration switched off",
        {"signals": ANGRY, "rules": replace(RULES, frustration=False)},
        None,
        None,
    ),
    ("wants human beats frustration", {"signals": BOTH}, "human_requested", "signals.wants_human"),
    ("stalled at the limit", {"turns": 12}, "stalled", "max_turns_without_progress=12"),
    ("below the limit", {"turns": 11}, None, None),
    (
        "stalled rule off",
        {"turns": 99, "rules": replace(RULES, max_turns_without_progress=0)},
        None,
        None,
    ),
    ("no signals at all", {"signals": None}, None, None),
    (
        "agent's say never triggers",
        {"side": Side.RESPONDER, "signals": BOTH, "turns": 99},
        None,
        None,
    ),
    ("operator's say never triggers", {"side": Side.OPERATOR, "signals": BOTH}, None, None),
    ("initiator cancel never triggers", {"act": "cancel", "signals": BOTH}, None, None),
    ("nothing while escalated", {"signals": BOTH, "escalated": True, "turns": 99}, None, None),
]


@pytest.mark.parametrize(
    ("kwargs", "reason", "rule"),
    [case[1:] for case in MESSAGE_CASES],
    ids=[case[0] for case in MESSAGE_CASES],
)
def test_message_triggers(kwargs: dict[str, object], reason: str | None, rule: str | None) -> None:
    """Each message case fires the expected reason and rule, or nothing."""
    trigger = fire("My speaker is broken.", **kwargs)  # type: ignore[arg-type]
    if reason is None:
        assert trigger is None
        return
    assert trigger is not None
    assert (trigger.reason, trigger.rule) == (reason, rule)
    assert trigger.text


TEXT_CASES: list[tuple[str, str | None]] = [
    ("I will file a CHARGEBACK today", "keyword:chargeback"),
    ("we are considering legal   action", "keyword:legal action"),
    ("my chargebacks", None),  # keywords are whole words
    ("legal advice, no action", None),  # a phrase, in order
    ("I want my money refunded", "topic:refund"),
    ("Refunds?", "topic:refund"),
    ("fund raising", None),  # topics match word starts, not any substring
]


@pytest.mark.parametrize(("text", "rule"), TEXT_CASES)
def test_policy_rules_match_words(text: str, rule: str | None) -> None:
    """Keywords match whole words or phrases; topics match words by their start."""
    trigger = fire(text)
    if rule is None:
        assert trigger is None
    else:
        assert trigger is not None
        assert (trigger.reason, trigger.rule) == ("policy_rule", rule)


def test_precedence_human_then_keyword_then_frustration_then_stalled() -> None:
    """With everything true at once, the order in the module doc decides."""
    text = "chargeback!"
    assert must(fire(text, signals=BOTH, turns=50)).reason == "human_requested"
    assert must(fire(text, signals=ANGRY, turns=50)).reason == "policy_rule"
    assert must(fire("hm", signals=ANGRY, turns=50)).reason == "frustration"
    assert must(fire("hm", signals=CALM, turns=50)).reason == "stalled"


def test_priorities_follow_the_brand() -> None:
    """Default priorities per reason, and a brand override changes one."""
    assert must(fire("x", signals=WANTS)).priority == "high"
    custom = replace(RULES, priorities=Priorities(human_requested="urgent"))
    assert must(fire("x", signals=WANTS, rules=custom)).priority == "urgent"


def test_agent_reason_text_is_quoted_and_shortened() -> None:
    """The agent's reason is quoted for the human, and long text is cut with an ellipsis."""
    trigger = fire("warranty " * 100, side=Side.RESPONDER, act="escalate")
    assert trigger is not None
    assert trigger.text.startswith("The brand agent asked for a person: “warranty")
    assert trigger.text.endswith("…”")
    assert len(trigger.text) < 250
    silent = fire("", side=Side.RESPONDER, act="escalate")
    assert silent is not None and "without giving a reason" in silent.text


T0 = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("agent_reply_at", "now", "escalated", "task_open", "fires"),
    [
        (None, T0 + timedelta(seconds=600), False, True, True),
        (None, T0 + timedelta(seconds=599), False, True, False),
        (T0 - timedelta(minutes=5), T0 + timedelta(hours=1), False, True, True),
        (T0 + timedelta(seconds=30), T0 + timedelta(hours=1), False, True, False),
        (None, T0 + timedelta(hours=1), True, True, False),
        (None, T0 + timedelta(hours=1), False, False, False),
    ],
)
def test_reply_timeout(
    agent_reply_at: datetime | None, now: datetime, escalated: bool, task_open: bool, fires: bool
) -> None:
    """No agent reply within the limit fires `stalled`; a reply, an escalation or an end stop it."""
    trigger = evaluate_timeout(
        initiator_at=T0,
        agent_reply_at=agent_reply_at,
        now=now,
        rules=RULES,
        already_escalated=escalated,
        task_open=task_open,
    )
    if fires:
        assert trigger is not None
        assert (trigger.reason, trigger.rule) == ("stalled", "agent_reply_timeout_s=600")
    else:
        assert trigger is None


def test_reply_timeout_off() -> None:
    """With agent_reply_timeout_s None there is no deadline and nothing fires."""
    rules = replace(RULES, agent_reply_timeout_s=None)
    assert reply_deadline(T0, rules) is None
    trigger = evaluate_timeout(
        initiator_at=T0,
        agent_reply_at=None,
        now=T0 + timedelta(days=3),
        rules=rules,
        already_escalated=False,
    )
    assert trigger is None


def test_unreachable_fires_urgent_unless_escalated() -> None:
    """Delivery give-up escalates as agent_unreachable, urgent, naming the agent."""
    trigger = unreachable(
        agent="support@sonos.example",
        attempts=17,
        last_error="HTTP 503",
        rules=RULES,
        already_escalated=False,
    )
    assert trigger is not None
    assert (trigger.reason, trigger.priority) == ("agent_unreachable", "urgent")
    assert "support@sonos.example" in trigger.text and "HTTP 503" in trigger.text
    again = unreachable(
        agent="support@sonos.example",
        attempts=1,
        last_error="x",
        rules=RULES,
        already_escalated=True,
    )
    assert again is None


def test_deadlines() -> None:
    """Reply, unclaimed and abandon deadlines add the brand's limits to their start."""
    assert reply_deadline(T0, RULES) == T0 + timedelta(minutes=10)
    assert unclaimed_deadline(T0, RULES) == T0 + timedelta(minutes=10)
    assert abandon_deadline(T0, RULES) == T0 + timedelta(days=7)


def test_turn_counting() -> None:
    """Initiator says count; open and reopen restart at one; a handback resets to zero."""
    assert count_turn(0, side=Side.INITIATOR, act="say", effect="opened") == 1
    assert count_turn(3, side=Side.INITIATOR, act="say", effect=None) == 4
    assert count_turn(3, side=Side.RESPONDER, act="say", effect=None) == 3
    assert count_turn(9, side=Side.INITIATOR, act="say", effect="reopened") == 1
    assert count_turn(9, side=Side.OPERATOR, act="handback", effect="handed_back") == 0
