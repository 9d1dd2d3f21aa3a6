"""The brand policy document: defaults, validation that names the bad member, round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.brand_policy import allow_entry_matches
from routing.errors import PolicyInvalid
from routing.escalation import PRIORITIES, REASONS, EscalationRules, Priorities
from routing.policy import (
    DEFAULT_POLICY,
    BrandPolicy,
    ContactPolicy,
    policy_from_json,
    policy_to_json,
)


def test_empty_document_is_the_default() -> None:
    """A brand that sends {} gets every default, version 0."""
    assert policy_from_json({}) == DEFAULT_POLICY
    assert DEFAULT_POLICY.contact.mode == "open"
    assert DEFAULT_POLICY.contact.rate_per_minute is None  # the gateway setting applies
    assert DEFAULT_POLICY.escalation.unclaimed_after_s == 600


def test_partial_document_keeps_other_defaults() -> None:
    """Only the members given change; the rest stay default."""
    policy = policy_from_json(
        {
            "contact": {"mode": "allowlist", "allow": ["People.Example", "people.example"]},
            "escalation": {"keywords": ["  lawyer "], "priorities": {"stalled": "low"}},
        }
    )
    assert policy.contact.mode == "allowlist"
    assert policy.contact.allow == ("people.example",)  # lowercased, duplicates dropped
    assert policy.contact.rate_per_minute is None
    assert policy.escalation.keywords == ("lawyer",)
    assert policy.escalation.priorities.stalled == "low"
    assert policy.escalation.priorities.agent_unreachable == "urgent"


def test_reply_timeout_can_be_switched_off() -> None:
    """agent_reply_timeout_s: null turns the no-reply rule off."""
    policy = policy_from_json({"escalation": {"agent_reply_timeout_s": None}})
    assert policy.escalation.agent_reply_timeout_s is None
    assert policy_to_json(policy)["escalation"]["agent_reply_timeout_s"] is None  # type: ignore[index]


BAD: list[tuple[object, str]] = [
    ([], "policy"),
    ({"mode": "open"}, "mode"),
    ({"contact": []}, "contact"),
    ({"contact": {"mode": "invite-only"}}, "contact.mode"),
    ({"contact": {"allow": "people.example"}}, "contact.allow"),
    ({"contact": {"allow": ["ok.example", 7]}}, "contact.allow[1]"),
    ({"contact": {"allow": ["ok.example", "no-dot"]}}, "contact.allow[1]"),
    ({"contact": {"allow": ["Bad Local@x.example"]}}, "contact.allow[0]"),
    ({"contact": {"rate_per_minute": 0}}, "contact.rate_per_minute"),
    ({"contact": {"rate_per_minute": 1.5}}, "contact.rate_per_minute"),
    ({"contact": {"rate_per_minute": True}}, "contact.rate_per_minute"),
    ({"contact": {"allow_brand_agents": "yes"}}, "contact.allow_brand_agents"),
    ({"contact": {"colour": "red"}}, "contact.colour"),
    ({"escalation": {"keywords": [""]}}, "escalation.keywords[0]"),
    ({"escalation": {"topics": ["x" * 201]}}, "escalation.topics[0]"),
    ({"escalation": {"max_turns_without_progress": -1}}, "escalation.max_turns_without_progress"),
    ({"escalation": {"agent_reply_timeout_s": 0}}, "escalation.agent_reply_timeout_s"),
    ({"escalation": {"abandon_after_s": 10}}, "escalation.abandon_after_s"),
    ({"escalation": {"signal_min_confidence": 2}}, "escalation.signal_min_confidence"),
    ({"escalation": {"priorities": {"stalled": "meh"}}}, "escalation.priorities.stalled"),
    ({"escalation": {"priorities": {"boredom": "low"}}}, "escalation.priorities.boredom"),
    ({"version": -1}, "version"),
]


@pytest.mark.parametrize(("doc", "member"), BAD, ids=[m for _, m in BAD])
def test_bad_member_is_named(doc: object, member: str) -> None:
    """Each invalid document is refused with policy_invalid naming the offending member."""
    with pytest.raises(PolicyInvalid) as caught:
        policy_from_json(doc)
    assert caught.value.code == "policy_invalid"
    assert caught.value.fields["member"] == member
    assert f"'{member}'" in caught.value.detail


def test_to_json_writes_every_member_as_plain_json() -> None:
    """The written document is JSON-serialisable and lists all six reasons' priorities."""
    doc = policy_to_json(DEFAULT_POLICY)
    text = json.dumps(doc)
    assert set(json.loads(text)["escalation"]["priorities"]) == set(REASONS)


words = (
    st.text(alphabet="abcdefghij klm", min_size=1, max_size=12)
    .filter(lambda w: w.strip() != "")
    .map(lambda w: " ".join(w.split()))
)
labels = st.text(alphabet="abcxyz019-", min_size=1, max_size=8)
domains = st.lists(labels, min_size=2, max_size=3).map(".".join)
entries = st.one_of(
    domains,
    domains.map(lambda d: "*@" + d),
    st.tuples(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,8}", fullmatch=True), domains).map("@".join),
)
priorities = st.builds(Priorities, **{reason: st.sampled_from(PRIORITIES) for reason in REASONS})
policies = st.builds(
    BrandPolicy,
    contact=st.builds(
        ContactPolicy,
        mode=st.sampled_from(["open", "allowlist", "closed"]),
        allow=st.lists(entries, unique=True, max_size=4).map(tuple),
        rate_per_minute=st.integers(1, 100_000),
        allow_brand_agents=st.booleans(),
    ),
    escalation=st.builds(
        EscalationRules,
        human_requested=st.booleans(),
        frustration=st.booleans(),
        keywords=st.lists(words, unique=True, max_size=3).map(tuple),
        topics=st.lists(words, unique=True, max_size=3).map(tuple),
        max_turns_without_progress=st.integers(0, 10_000),
        agent_reply_timeout_s=st.none() | st.integers(1, 86_400),
        unclaimed_after_s=st.integers(1, 86_400),
        abandon_after_s=st.integers(60, 10**7),
        signal_min_confidence=st.floats(0, 1),
        priorities=priorities,
    ),
    version=st.integers(0, 10**6),
)


@given(policies)
def test_round_trip_through_json(policy: BrandPolicy) -> None:
    """Any valid policy survives to_json -> JSON text -> from_json unchanged."""
    doc: Any = json.loads(json.dumps(policy_to_json(policy)))
    assert policy_from_json(doc) == policy


@pytest.mark.parametrize(
    ("entry", "address", "matches"),
    [
        ("people.example", "alice@people.example", True),
        ("*@people.example", "alice@people.example", True),
        ("alice@people.example", "alice@people.example", True),
        ("alice@people.example", "bob@people.example", False),
        ("people.example", "alice@eu.people.example", False),
        ("people.example", "alice@people.example.evil", False),
    ],
)
def test_allow_entry_matching(entry: str, address: str, matches: bool) -> None:
    """Allow entries match an exact address or exactly one domain, never a lookalike."""
    assert allow_entry_matches(entry, address) is matches
