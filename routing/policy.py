"""Who may do what: roles and permissions (PROTOCOL.md section 4) and who may write to whom.

Two questions, two functions:

- `authorize(principal, action, target)`: may this caller use this endpoint on this thing?
  One rule table, `RULES`, says for each `Action` which grants open it; the admin holds every
  grant. Anonymous callers get `Unauthorized` where an identity is needed; known callers
  without a matching grant get `Forbidden`.
- `check_contact(sender, recipient, policy, task_initiator)`: may this envelope reach this
  recipient? It applies the protocol's fixed rules (a brand agent writes to a personal agent
  only inside a task that person opened; personal-to-personal and brand-to-brand need a
  setting) and then the recipient brand's contact policy for new tasks. Messages inside an
  existing task always pass the brand's contact policy: a brand that closes its doors does
  not cut off conversations already under way.

The brand's policy document (contact, rate limit, escalation rules) lives in
`routing.brand_policy` and is re-exported here.

Choices where the protocol is silent:
    * Brand staff (brand admins and operators) read the brand's tasks and escalations; only
      operators work escalations; only brand admins read the outcome ledger and the policy.
    * An agent registering or managing itself is matched by address: the gateway builds the
      principal from the JWT that proves possession of the key.
    * `SEND_MESSAGE` is open to any agent; the envelope's signature already binds `from` to
      the caller, and `check_contact` decides the recipient.
    * Brand-to-brand includes two agents of one brand: internal transfers are also tasks and
      need the same opt-in (`allow_brand_agents`). Even when brand agents are allowed, the
      brand's `closed` and `allowlist` modes still apply to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from routing.brand_policy import (
    DEFAULT_POLICY,
    BrandPolicy,
    ContactPolicy,
    allow_entry_matches,
    policy_from_json,
    policy_to_json,
)
from routing.errors import Forbidden, Unauthorized

__all__ = [
    "DEFAULT_POLICY",
    "RULES",
    "Action",
    "BrandPolicy",
    "ContactPolicy",
    "Grant",
    "Party",
    "Principal",
    "Role",
    "Target",
    "authorize",
    "check_contact",
    "policy_from_json",
    "policy_to_json",
]


class Role(StrEnum):
    """The roles of PROTOCOL.md section 4."""

    ADMIN = "admin"
    BRAND_ADMIN = "brand_admin"
    OPERATOR = "operator"
    BRAND_AGENT = "brand_agent"
    PERSONAL_AGENT = "personal_agent"
    ANONYMOUS = "anonymous"


AGENT_ROLES = frozenset({Role.BRAND_AGENT, Role.PERSONAL_AGENT})
STAFF_ROLES = frozenset({Role.BRAND_ADMIN, Role.OPERATOR})
_NEEDS_BRAND = frozenset({Role.BRAND_ADMIN, Role.OPERATOR, Role.BRAND_AGENT})
_NEEDS_ADDRESS = frozenset({Role.BRAND_AGENT, Role.PERSONAL_AGENT})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller (or the anonymous one).

    Attributes:
        role: What the credential proved.
        address: The caller's address (agents; operators have one too).
        brand: The brand domain, for brand admins, operators and brand agents.
    """

    role: Role
    address: str | None = None
    brand: str | None = None

    def __post_init__(self) -> None:
        if self.role in _NEEDS_BRAND and not self.brand:
            raise ValueError(f"a {self.role} principal needs its brand domain")
        if self.role in _NEEDS_ADDRESS and not self.address:
            raise ValueError(f"a {self.role} principal needs its address")


ANONYMOUS = Principal(Role.ANONYMOUS)


class Action(StrEnum):
    """One per group of endpoints in PROTOCOL.md section 5."""

    READ_WELL_KNOWN = "read_well_known"
    CREATE_BRAND = "create_brand"
    REGISTER_BRAND_AGENT = "register_brand_agent"
    REGISTER_PERSONAL_AGENT = "register_personal_agent"
    READ_AGENT_CARD = "read_agent_card"
    UPDATE_AGENT = "update_agent"
    MANAGE_AGENT_KEYS = "manage_agent_keys"
    SEARCH_DIRECTORY = "search_directory"
    SEND_MESSAGE = "send_message"
    READ_INBOX = "read_inbox"
    READ_TASK = "read_task"
    LIST_TASKS = "list_tasks"
    MANAGE_OPERATORS = "manage_operators"
    MANAGE_CHANNELS = "manage_channels"
    SET_POLICY = "set_policy"
    READ_POLICY = "read_policy"
    READ_ESCALATIONS = "read_escalations"
    WORK_ESCALATION = "work_escalation"
    READ_OUTCOMES = "read_outcomes"
    READ_HEALTH = "read_health"


@dataclass(frozen=True, slots=True)
class Target:
    """What an action is about; the gateway fills what it knows.

    Attributes:
        brand: The brand domain the action concerns (a brand's operators, policy, tasks).
        agent: The agent address concerned (a card, keys, an inbox, a registration).
        task_parties: The initiator and responder addresses of the task concerned.
        agent_brand: The brand domain of `agent`, when it is a brand agent.
    """

    brand: str | None = None
    agent: str | None = None
    task_parties: frozenset[str] = frozenset()
    agent_brand: str | None = None


class Grant(StrEnum):
    """One way to be allowed; an action lists the grants that open it."""

    ANYONE = "anyone"
    ANY_AGENT = "any agent"
    SELF = "the agent itself"
    PERSONAL_SELF = "the personal agent itself"
    PARTY = "a party to the task"
    BRAND_ADMIN = "the brand's admins"
    AGENT_BRAND_ADMIN = "the agent's brand admins"
    BRAND_OPERATOR = "the brand's operators"


RULES: Mapping[Action, frozenset[Grant]] = MappingProxyType(
    {
        Action.READ_WELL_KNOWN: frozenset({Grant.ANYONE}),
        Action.CREATE_BRAND: frozenset(),
        Action.REGISTER_BRAND_AGENT: frozenset({Grant.BRAND_ADMIN}),
        Action.REGISTER_PERSONAL_AGENT: frozenset({Grant.PERSONAL_SELF}),
        Action.READ_AGENT_CARD: frozenset({Grant.ANYONE}),
        Action.UPDATE_AGENT: frozenset({Grant.SELF, Grant.AGENT_BRAND_ADMIN}),
        Action.MANAGE_AGENT_KEYS: frozenset({Grant.SELF, Grant.AGENT_BRAND_ADMIN}),
        Action.SEARCH_DIRECTORY: frozenset({Grant.ANYONE}),
        Action.SEND_MESSAGE: frozenset({Grant.ANY_AGENT}),
        Action.READ_INBOX: frozenset({Grant.SELF}),
        Action.READ_TASK: frozenset({Grant.PARTY, Grant.BRAND_ADMIN, Grant.BRAND_OPERATOR}),
        Action.LIST_TASKS: frozenset({Grant.SELF, Grant.BRAND_ADMIN, Grant.BRAND_OPERATOR}),
        Action.MANAGE_OPERATORS: frozenset({Grant.BRAND_ADMIN}),
        Action.MANAGE_CHANNELS: frozenset({Grant.BRAND_ADMIN}),
        Action.SET_POLICY: frozenset({Grant.BRAND_ADMIN}),
        Action.READ_POLICY: frozenset({Grant.BRAND_ADMIN}),
        Action.READ_ESCALATIONS: frozenset({Grant.BRAND_ADMIN, Grant.BRAND_OPERATOR}),
        Action.WORK_ESCALATION: frozenset({Grant.BRAND_OPERATOR}),
        Action.READ_OUTCOMES: frozenset({Grant.BRAND_ADMIN}),
        Action.READ_HEALTH: frozenset({Grant.ANYONE}),
    }
)

_WHAT: Mapping[Action, str] = MappingProxyType(
    {
        Action.READ_WELL_KNOWN: "read the gateway's description",
        Action.CREATE_BRAND: "create brands",
        Action.REGISTER_BRAND_AGENT: "register a brand agent",
        Action.REGISTER_PERSONAL_AGENT: "register a personal agent",
        Action.READ_AGENT_CARD: "read agent cards",
        Action.UPDATE_AGENT: "change an agent",
        Action.MANAGE_AGENT_KEYS: "add or revoke an agent's keys",
        Action.SEARCH_DIRECTORY: "search the directory",
        Action.SEND_MESSAGE: "send envelopes",
        Action.READ_INBOX: "read an inbox",
        Action.READ_TASK: "read a task",
        Action.LIST_TASKS: "list tasks",
        Action.MANAGE_OPERATORS: "manage a brand's operators",
        Action.MANAGE_CHANNELS: "manage a brand's notification channels",
        Action.SET_POLICY: "set a brand's policy",
        Action.READ_POLICY: "read a brand's policy",
        Action.READ_ESCALATIONS: "read a brand's escalations",
        Action.WORK_ESCALATION: "work an escalation",
        Action.READ_OUTCOMES: "read a brand's outcome ledger",
        Action.READ_HEALTH: "read health and metrics",
    }
)


def authorize(principal: Principal, action: Action, target: Target) -> None:
    """Allow `principal` to perform `action` on `target`, or refuse with a reason.

    Raises:
        Unauthorized: The caller is anonymous and the action needs an identity.
        Forbidden: The caller is known but holds no grant that opens the action here.
    """
    grants = RULES[action]
    if Grant.ANYONE in grants or principal.role is Role.ADMIN:
        return
    if principal.role is Role.ANONYMOUS:
        raise Unauthorized(
            f"To {_WHAT[action]}, authenticate: send 'Authorization: Bearer' with an agent "
            "JWT or an sbt_ token.",
            action=str(action),
        )
    if any(_holds(principal, grant, target) for grant in grants):
        return
    who = ", ".join(["the admin", *sorted(g.value for g in grants)])
    raise Forbidden(
        f"A {principal.role} ({principal.address or principal.brand}) may not "
        f"{_WHAT[action]}{_about(target)}; allowed: {who}.",
        action=str(action),
        role=str(principal.role),
    )


def _holds(principal: Principal, grant: Grant, target: Target) -> bool:
    role = principal.role
    if grant is Grant.ANY_AGENT:
        return role in AGENT_ROLES
    if grant is Grant.SELF:
        return role in AGENT_ROLES and _same(principal.address, target.agent)
    if grant is Grant.PERSONAL_SELF:
        return role is Role.PERSONAL_AGENT and _same(principal.address, target.agent)
    if grant is Grant.PARTY:
        return role in AGENT_ROLES and principal.address in target.task_parties
    if grant is Grant.BRAND_ADMIN:
        return role is Role.BRAND_ADMIN and _same(principal.brand, target.brand)
    if grant is Grant.AGENT_BRAND_ADMIN:
        return role is Role.BRAND_ADMIN and _same(principal.brand, target.agent_brand)
    if grant is Grant.BRAND_OPERATOR:
        return role is Role.OPERATOR and _same(principal.brand, target.brand)
    return grant is Grant.ANYONE


def _same(mine: str | None, theirs: str | None) -> bool:
    return mine is not None and theirs is not None and mine == theirs


def _about(target: Target) -> str:
    if target.agent:
        return f" for {target.agent}"
    if target.brand:
        return f" for {target.brand}"
    return ""


# --- contact -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    """One end of an envelope, as the contact check needs it."""

    address: str
    kind: Literal["personal", "brand"]
    brand: str | None = None


def check_contact(
    sender: Party,
    recipient: Party,
    recipient_policy: BrandPolicy | None,
    task_initiator: str | None,
    *,
    personal_to_personal: bool = False,
) -> None:
    """May `sender` write to `recipient`?

    Args:
        sender: The envelope's sender.
        recipient: The resolved recipient (after routing a bare domain).
        recipient_policy: The recipient's brand policy (None: the defaults).
        task_initiator: The initiator of the envelope's task, or None for a new task.
        personal_to_personal: The gateway setting that lets personal agents open tasks
            with each other.

    Raises:
        Forbidden: With a detail saying which rule refused and who can change it.
    """
    facts: dict[str, object] = {"sender": sender.address, "recipient": recipient.address}
    if sender.kind == "brand" and recipient.kind == "personal":
        if task_initiator != recipient.address:
            raise Forbidden(
                f"A brand agent may write to {recipient.address} only inside a task that "
                f"{recipient.address} opened; answer on that task instead.",
                **facts,
            )
        return
    if task_initiator is not None:
        return
    if recipient.kind == "personal":
        if not personal_to_personal:
            raise Forbidden(
                f"{recipient.address} is a personal agent; this gateway does not let personal "
                "agents open tasks with each other.",
                **facts,
            )
        return
    policy = (recipient_policy or DEFAULT_POLICY).contact
    brand = recipient.brand or recipient.address.rpartition("@")[2]
    if sender.kind == "brand" and not policy.allow_brand_agents:
        raise Forbidden(
            f"{brand} does not accept new tasks from brand agents; its admins can allow it "
            "with allow_brand_agents in the brand policy.",
            **facts,
        )
    if policy.mode == "closed":
        raise Forbidden(
            f"{brand} accepts no new tasks at the moment (contact policy 'closed'); tasks "
            "already open continue.",
            **facts,
        )
    if policy.mode == "allowlist" and not any(
        allow_entry_matches(entry, sender.address) for entry in policy.allow
    ):
        raise Forbidden(
            f"{brand} accepts new tasks only from its allowlist, and {sender.address} is not "
            "on it; ask the brand to add your address or domain.",
            **facts,
        )
