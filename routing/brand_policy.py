"""A brand's policy document: contact policy, rate limit and escalation rules, validated.

This is the body of `PUT /v1/brands/{domain}/policy`. Every member is optional and takes its
default when absent, so a brand writes only what it changes; unknown members are refused so a
typo never silently does nothing. `policy_to_json` always writes the whole document, and
`policy_from_json(policy_to_json(p)) == p`.

    {
      "version": 3,
      "contact": {"mode": "allowlist", "allow": ["people.example", "*@corp.example",
                  "bob@people.example"], "rate_per_minute": 120, "allow_brand_agents": false},
      "escalation": {"human_requested": true, "frustration": true, "keywords": ["lawyer"],
                     "topics": ["refund"], "max_turns_without_progress": 12,
                     "agent_reply_timeout_s": 600, "unclaimed_after_s": 600,
                     "abandon_after_s": 604800, "signal_min_confidence": 0.5,
                     "priorities": {"agent_unreachable": "urgent", ...}}
    }

`version` is the gateway's counter of accepted documents (0 for the built-in default); the
gateway sets it on each accepted PUT, so a client may omit it.

Allow entries are an address (`bob@people.example`), a domain (`people.example`), or
`*@domain` (the same as the bare domain, for people used to that spelling). A domain entry
matches addresses exactly at that domain, not its subdomains. Entries are lowercased.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

from routing.errors import PolicyInvalid
from routing.escalation import (
    PRIORITIES,
    REASONS,
    EscalationRules,
    Priorities,
    Priority,
    Reason,
)

ContactMode = Literal["open", "allowlist", "closed"]
MODES: tuple[ContactMode, ...] = get_args(ContactMode)

MAX_ALLOW = 10_000
MAX_WORDS = 500
MAX_WORD_CHARS = 200
MAX_SECONDS = 365 * 24 * 3600

_LABEL = r"[a-z0-9-]{1,63}"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_LOCAL_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    """Who may open new tasks with a brand's agents, and how fast one sender may write.

    Attributes:
        mode: `open` (anyone), `allowlist` (only senders matching `allow`), `closed` (nobody
            new; tasks already open continue).
        allow: Allow entries (see the module doc); used by `allowlist`.
        rate_per_minute: Envelopes per minute one sender may send to this brand's agents;
            None (the default) means the gateway's own default (SWITCHBOARD_RATE_PER_MINUTE).
        allow_brand_agents: Whether other brands' agents may open tasks here.
    """

    mode: ContactMode = "open"
    allow: tuple[str, ...] = ()
    rate_per_minute: int | None = None
    allow_brand_agents: bool = False


@dataclass(frozen=True, slots=True)
class BrandPolicy:
    """The whole document: contact policy, escalation rules and the accepted version."""

    contact: ContactPolicy = field(default_factory=ContactPolicy)
    escalation: EscalationRules = field(default_factory=EscalationRules)
    version: int = 0


DEFAULT_POLICY = BrandPolicy()


def allow_entry_matches(entry: str, address: str) -> bool:
    """Does allow `entry` (address, domain or `*@domain`) cover `address`?"""
    entry = entry.lower()
    address = address.lower()
    if entry.startswith("*@"):
        entry = entry[2:]
    if "@" in entry:
        return entry == address
    return address.rpartition("@")[2] == entry


def policy_from_json(obj: object) -> BrandPolicy:
    """Validate a policy document and build the policy.

    Raises:
        PolicyInvalid: The first bad member, named in `detail` and in `fields["member"]`.
    """
    doc = _object(obj, "policy", {"version", "contact", "escalation"})
    contact = _object(
        doc.get("contact", {}),
        "contact",
        {"mode", "allow", "rate_per_minute", "allow_brand_agents"},
    )
    escalation = _object(
        doc.get("escalation", {}),
        "escalation",
        {f.name for f in dataclasses.fields(EscalationRules)},
    )
    base_contact = ContactPolicy()
    base_rules = EscalationRules()
    mode = contact.get("mode", base_contact.mode)
    if mode not in MODES:
        raise _bad("contact.mode", f"must be one of {', '.join(MODES)}")
    allow = tuple(
        dict.fromkeys(
            _allow_entry(entry, f"contact.allow[{i}]")
            for i, entry in enumerate(_strings(contact, "allow", MAX_ALLOW, "contact"))
        )
    )
    return BrandPolicy(
        contact=ContactPolicy(
            mode=mode,
            allow=allow,
            rate_per_minute=_optional_int(
                contact, "rate_per_minute", base_contact.rate_per_minute, 1, 100_000, "contact"
            ),
            allow_brand_agents=_bool(
                contact, "allow_brand_agents", base_contact.allow_brand_agents, "contact"
            ),
        ),
        escalation=EscalationRules(
            human_requested=_bool(
                escalation, "human_requested", base_rules.human_requested, "escalation"
            ),
            frustration=_bool(escalation, "frustration", base_rules.frustration, "escalation"),
            keywords=_words(escalation, "keywords"),
            topics=_words(escalation, "topics"),
            max_turns_without_progress=_int(
                escalation,
                "max_turns_without_progress",
                base_rules.max_turns_without_progress,
                0,
                10_000,
                "escalation",
            ),
            agent_reply_timeout_s=_optional_int(
                escalation,
                "agent_reply_timeout_s",
                base_rules.agent_reply_timeout_s,
                1,
                MAX_SECONDS,
                "escalation",
            ),
            unclaimed_after_s=_int(
                escalation,
                "unclaimed_after_s",
                base_rules.unclaimed_after_s,
                1,
                MAX_SECONDS,
                "escalation",
            ),
            abandon_after_s=_int(
                escalation,
                "abandon_after_s",
                base_rules.abandon_after_s,
                60,
                MAX_SECONDS,
                "escalation",
            ),
            signal_min_confidence=_fraction(
                escalation, "signal_min_confidence", base_rules.signal_min_confidence
            ),
            priorities=_priorities(escalation.get("priorities", {})),
        ),
        version=_int(doc, "version", 0, 0, 2**53, "policy"),
    )


def policy_to_json(policy: BrandPolicy) -> dict[str, object]:
    """The whole document, every member written (the inverse of `policy_from_json`)."""
    contact = policy.contact
    rules = policy.escalation
    return {
        "version": policy.version,
        "contact": {
            "mode": contact.mode,
            "allow": list(contact.allow),
            "rate_per_minute": contact.rate_per_minute,
            "allow_brand_agents": contact.allow_brand_agents,
        },
        "escalation": {
            "human_requested": rules.human_requested,
            "frustration": rules.frustration,
            "keywords": list(rules.keywords),
            "topics": list(rules.topics),
            "max_turns_without_progress": rules.max_turns_without_progress,
            "agent_reply_timeout_s": rules.agent_reply_timeout_s,
            "unclaimed_after_s": rules.unclaimed_after_s,
            "abandon_after_s": rules.abandon_after_s,
            "signal_min_confidence": rules.signal_min_confidence,
            "priorities": {reason: rules.priorities.of(reason) for reason in REASONS},
        },
    }


def _bad(member: str, problem: str) -> PolicyInvalid:
    return PolicyInvalid(f"Policy member '{member}' {problem}.", member=member)


def _object(value: object, member: str, known: set[str]) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise _bad(member, "must be a JSON object")
    for key in value:
        if key not in known:
            prefix = "" if member == "policy" else f"{member}."
            raise _bad(f"{prefix}{key}", f"is not known; known members: {', '.join(sorted(known))}")
    return cast(Mapping[str, object], value)


def _path(section: str, key: str) -> str:
    return key if section == "policy" else f"{section}.{key}"


def _bool(obj: Mapping[str, object], key: str, default: bool, section: str) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise _bad(_path(section, key), "must be true or false")
    return value


def _int(
    obj: Mapping[str, object], key: str, default: int, low: int, high: int, section: str
) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(_path(section, key), "must be a whole number")
    if not low <= value <= high:
        raise _bad(_path(section, key), f"must be between {low} and {high}")
    return value


def _optional_int(
    obj: Mapping[str, object], key: str, default: int | None, low: int, high: int, section: str
) -> int | None:
    if key in obj and obj[key] is None:
        return None
    if key not in obj and default is None:
        return None
    return _int(obj, key, default if default is not None else low, low, high, section)


def _fraction(obj: Mapping[str, object], key: str, default: float) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"escalation.{key}", "must be a number")
    if not 0.0 <= value <= 1.0:
        raise _bad(f"escalation.{key}", "must be between 0 and 1")
    return float(value)


def _strings(obj: Mapping[str, object], key: str, most: int, section: str) -> list[str]:
    value = obj.get(key, [])
    member = _path(section, key)
    if not isinstance(value, list):
        raise _bad(member, "must be a list of strings")
    if len(value) > most:
        raise _bad(member, f"has {len(value)} entries; at most {most} are allowed")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _bad(f"{member}[{i}]", "must be a string")
    return cast(list[str], value)


def _words(obj: Mapping[str, object], key: str) -> tuple[str, ...]:
    out: list[str] = []
    for i, item in enumerate(_strings(obj, key, MAX_WORDS, "escalation")):
        word = " ".join(item.split())
        if not word or len(word) > MAX_WORD_CHARS or not re.search(r"\w", word):
            raise _bad(
                f"escalation.{key}[{i}]",
                f"must contain a word and be at most {MAX_WORD_CHARS} characters",
            )
        out.append(word)
    return tuple(dict.fromkeys(out))


def _allow_entry(entry: str, member: str) -> str:
    value = entry.strip().lower()
    local, at, domain = value.rpartition("@")
    if not at:
        local, domain = "", value
    domain_ok = len(domain) <= 253 and _DOMAIN_RE.fullmatch(domain) is not None
    local_ok = not at or local == "*" or _LOCAL_RE.fullmatch(local) is not None
    if not (domain_ok and local_ok):
        raise _bad(
            member,
            f"({entry!r}) must be an address (bob@people.example), a domain (people.example) "
            "or *@domain",
        )
    return value


def _priorities(value: object) -> Priorities:
    given = _object(value, "escalation.priorities", set(REASONS))
    base = Priorities()

    def pick(reason: Reason) -> Priority:
        chosen = given.get(reason, base.of(reason))
        if chosen not in PRIORITIES:
            raise _bad(f"escalation.priorities.{reason}", f"must be one of {', '.join(PRIORITIES)}")
        return chosen

    return Priorities(
        agent_request=pick("agent_request"),
        human_requested=pick("human_requested"),
        policy_rule=pick("policy_rule"),
        frustration=pick("frustration"),
        stalled=pick("stalled"),
        agent_unreachable=pick("agent_unreachable"),
    )
