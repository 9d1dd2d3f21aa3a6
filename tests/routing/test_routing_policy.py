"""Roles and permissions (the whole matrix) and the contact check between senders and brands."""

from __future__ import annotations

import itertools

import pytest

from routing.errors import Forbidden, RoutingError, Unauthorized
from routing.policy import (
    DEFAULT_POLICY,
    Action,
    BrandPolicy,
    ContactPolicy,
    Party,
    Principal,
    Role,
    Target,
    authorize,
    check_contact,
)

OWN_BRAND, OTHER_BRAND = "sonos.example", "bose.example"
OTHER_AGENT = "support@bose.example"

PRINCIPALS = {
    Role.ADMIN: Principal(Role.ADMIN),
    Role.BRAND_ADMIN: Principal(Role.BRAND_ADMIN, brand=OWN_BRAND),
    Role.OPERATOR: Principal(Role.OPERATOR, address="jane@sonos.example", brand=OWN_BRAND),
    Role.BRAND_AGENT: Principal(Role.BRAND_AGENT, address="help@sonos.example", brand=OWN_BRAND),
    Role.PERSONAL_AGENT: Principal(Role.PERSONAL_AGENT, address="alice@people.example"),
    Role.ANONYMOUS: Principal(Role.ANONYMOUS),
}

# Expectations, one row per action, one column per role, written by hand from PROTOCOL.md §4-5.
# Y: allowed; N: forbidden; U: unauthorized; B: allowed only for its own brand;
# A: allowed only for its own agent address; P: allowed only as a party to the task.
COLUMNS = [
    Role.ADMIN,
    Role.BRAND_ADMIN,
    Role.OPERATOR,
    Role.BRAND_AGENT,
    Role.PERSONAL_AGENT,
    Role.ANONYMOUS,
]
EXPECTED = """
read_well_known          Y Y Y Y Y Y
create_brand             Y N N N N U
register_brand_agent     Y B N N N U
register_personal_agent  Y N N N A U
read_agent_card          Y Y Y Y Y Y
update_agent             Y B N A A U
manage_agent_keys        Y B N A A U
search_directory         Y Y Y Y Y Y
send_message             Y N N Y Y U
read_inbox               Y N N A A U
read_task                Y B B P P U
list_tasks               Y B B A A U
manage_operators         Y B N N N U
manage_channels          Y B N N N U
set_policy               Y B N N N U
read_policy              Y B N N N U
read_escalations         Y B B N N U
work_escalation          Y N B N N U
read_outcomes            Y B N N N U
read_health              Y Y Y Y Y Y
"""


def _expectations() -> dict[tuple[Role, Action], str]:
    table: dict[tuple[Role, Action], str] = {}
    for line in EXPECTED.strip().splitlines():
        name, *cells = line.split()
        for role, cell in zip(COLUMNS, cells, strict=True):
            table[(role, Action(name))] = cell
    return table


TABLE = _expectations()
CASES = list(
    itertools.product(Role, Action, [True, False], [True, False], [True, False])
)  # role, action, own brand?, own agent?, party?


def _target(principal: Principal, own_brand: bool, own_agent: bool, party: bool) -> Target:
    brand = OWN_BRAND if own_brand else OTHER_BRAND
    agent = principal.address if own_agent else OTHER_AGENT
    parties = {"bob@people.example", OTHER_AGENT}
    if party and principal.address:
        parties.add(principal.address)
    return Target(brand=brand, agent=agent, task_parties=frozenset(parties), agent_brand=brand)


def _outcome(cell: str, own_brand: bool, own_agent: bool, party: bool) -> str:
    allowed = {
        "Y": True,
        "N": False,
        "U": False,
        "B": own_brand,
        "A": own_agent,
        "P": party,
    }[cell]
    if allowed:
        return "ok"
    return "unauthorized" if cell == "U" else "forbidden"


def test_expectation_table_covers_every_role_and_action() -> None:
    """The hand-written table has one cell for each of the 6 x 20 role/action pairs."""
    assert len(TABLE) == len(Role) * len(Action) == 120


@pytest.mark.parametrize(("role", "action", "own_brand", "own_agent", "party"), CASES)
def test_role_matrix(
    role: Role, action: Action, own_brand: bool, own_agent: bool, party: bool
) -> None:
    """Every role on every action, own/other brand, own/other agent, party/not: as tabled."""
    principal = PRINCIPALS[role]
    expected = _outcome(TABLE[(role, action)], own_brand, own_agent, party)
    target = _target(principal, own_brand, own_agent, party)
    if expected == "ok":
        authorize(principal, action, target)
        return
    with pytest.raises(RoutingError) as caught:
        authorize(principal, action, target)
    assert caught.value.code == expected
    assert caught.value.detail


def test_forbidden_detail_names_who_is_allowed() -> None:
    """A refused operator learns that only brand admins (or the admin) may set policy."""
    with pytest.raises(Forbidden) as caught:
        authorize(PRINCIPALS[Role.OPERATOR], Action.SET_POLICY, Target(brand=OWN_BRAND))
    assert "the brand's admins" in caught.value.detail
    assert "set a brand's policy" in caught.value.detail


def test_unauthorized_detail_says_how_to_authenticate() -> None:
    """An anonymous caller is told to send a bearer credential."""
    with pytest.raises(Unauthorized) as caught:
        authorize(Principal(Role.ANONYMOUS), Action.READ_INBOX, Target())
    assert "Authorization: Bearer" in caught.value.detail


def test_principal_without_its_brand_is_a_bug() -> None:
    """A brand admin principal must carry its brand; building one without is refused."""
    with pytest.raises(ValueError, match="brand"):
        Principal(Role.BRAND_ADMIN)


def test_party_check_ignores_a_missing_target() -> None:
    """A party grant never matches when the task has no parties (nothing to be party to)."""
    with pytest.raises(Forbidden):
        authorize(PRINCIPALS[Role.PERSONAL_AGENT], Action.READ_TASK, Target())


# --- contact ------------------------------------------------------------------------------

ALICE = Party("alice@people.example", "personal")
BOB = Party("bob@people.example", "personal")
MALLORY = Party("mallory@evil.example", "personal")
SONOS = Party("support@sonos.example", "brand", "sonos.example")
BOSE = Party("help@bose.example", "brand", "bose.example")


def _policy(**contact: object) -> BrandPolicy:
    return BrandPolicy(contact=ContactPolicy(**contact))  # type: ignore[arg-type]


ALLOWLIST = _policy(
    mode="allowlist", allow=("people.example", "*@corp.example", "mallory@evil.example")
)

CONTACT_CASES: list[tuple[str, Party, Party, BrandPolicy | None, str | None, bool, bool]] = [
    # (name, sender, recipient, policy, task initiator, personal_to_personal, allowed)
    ("personal opens with open brand", ALICE, SONOS, None, None, False, True),
    ("personal opens with default policy", ALICE, SONOS, DEFAULT_POLICY, None, False, True),
    ("closed brand refuses new task", ALICE, SONOS, _policy(mode="closed"), None, False, False),
    (
        "closed brand keeps open task",
        ALICE,
        SONOS,
        _policy(mode="closed"),
        ALICE.address,
        False,
        True,
    ),
    ("allowlist by domain", ALICE, SONOS, ALLOWLIST, None, False, True),
    ("allowlist by address", MALLORY, SONOS, ALLOWLIST, None, False, True),
    (
        "allowlist by star domain",
        Party("x@corp.example", "personal"),
        SONOS,
        ALLOWLIST,
        None,
        False,
        True,
    ),
    (
        "allowlist refuses others",
        Party("x@other.example", "personal"),
        SONOS,
        ALLOWLIST,
        None,
        False,
        False,
    ),
    (
        "allowlist is not subdomains",
        Party("x@sub.corp.example", "personal"),
        SONOS,
        ALLOWLIST,
        None,
        False,
        False,
    ),
    (
        "allowlist keeps open task",
        Party("x@other.example", "personal"),
        SONOS,
        ALLOWLIST,
        "x@other.example",
        False,
        True,
    ),
    ("brand replies inside the person's task", SONOS, ALICE, None, ALICE.address, False, True),
    ("brand may not open a task to a person", SONOS, ALICE, None, None, False, False),
    ("brand may not write into someone else's task", SONOS, ALICE, None, BOB.address, False, False),
    ("personal to personal refused by default", ALICE, BOB, None, None, False, False),
    ("personal to personal when the gateway allows", ALICE, BOB, None, None, True, True),
    ("brand to brand refused by default", BOSE, SONOS, None, None, False, False),
    (
        "brand to brand when allowed",
        BOSE,
        SONOS,
        _policy(allow_brand_agents=True),
        None,
        False,
        True,
    ),
    (
        "brand to brand allowed but brand closed",
        BOSE,
        SONOS,
        _policy(allow_brand_agents=True, mode="closed"),
        None,
        False,
        False,
    ),
    ("brand to brand inside an existing task", BOSE, SONOS, None, BOSE.address, False, True),
]


@pytest.mark.parametrize(
    ("sender", "recipient", "policy", "initiator", "p2p", "allowed"),
    [case[1:] for case in CONTACT_CASES],
    ids=[case[0] for case in CONTACT_CASES],
)
def test_contact_rules(
    sender: Party,
    recipient: Party,
    policy: BrandPolicy | None,
    initiator: str | None,
    p2p: bool,
    allowed: bool,
) -> None:
    """Each contact case passes or is forbidden as the protocol and the brand's policy say."""
    if allowed:
        check_contact(sender, recipient, policy, initiator, personal_to_personal=p2p)
        return
    with pytest.raises(Forbidden) as caught:
        check_contact(sender, recipient, policy, initiator, personal_to_personal=p2p)
    assert caught.value.fields["sender"] == sender.address


def test_allowlist_refusal_says_what_to_do() -> None:
    """The refused sender is told it is not on the allowlist and whom to ask."""
    with pytest.raises(Forbidden) as caught:
        check_contact(Party("x@other.example", "personal"), SONOS, ALLOWLIST, None)
    assert "allowlist" in caught.value.detail
    assert "x@other.example" in caught.value.detail
