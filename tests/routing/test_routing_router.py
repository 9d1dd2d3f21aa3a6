"""Choosing the recipient: explicit addresses, domain routing by the port's choice, fallbacks."""

from __future__ import annotations

import pytest

from routing.errors import UnknownRecipient
from routing.language import Candidate, RouteChoice
from routing.router import Route, choose_recipient, is_bare_domain

SONOS = [
    Candidate("support@sonos.example", "General help", ("troubleshooting",)),
    Candidate("orders@sonos.example", "Orders and returns", ("refunds", "shipping")),
]
TEXT = "Where is my parcel?"


def test_explicit_address_is_itself() -> None:
    """An address routes to itself, whatever the candidates and the port say."""
    route = choose_recipient("orders@sonos.example", TEXT, [], None)
    assert route == Route("orders@sonos.example", 1.0, route.why, by_domain=False)
    assert "directly" in route.why


def test_domain_takes_the_ports_choice() -> None:
    """A bare domain goes where the language port chose, with its score and reason."""
    choice = RouteChoice("orders@sonos.example", 0.8, "skills: shipping")
    route = choose_recipient("sonos.example", TEXT, SONOS, choice)
    assert route == Route("orders@sonos.example", 0.8, "skills: shipping", by_domain=True)


@pytest.mark.parametrize(
    ("choice", "because"),
    [
        (None, "not matched"),
        (RouteChoice(None, 0.0, "nothing fits"), "no agent's skills clearly fit"),
        (RouteChoice("help@bose.example", 0.9, "stray"), "not an agent of sonos.example"),
    ],
)
def test_fallback_is_first_registered(choice: RouteChoice | None, because: str) -> None:
    """Without a usable choice the first-registered agent gets it, and `why` says why."""
    route = choose_recipient("Sonos.Example", TEXT, SONOS, choice)
    assert route.address == "support@sonos.example"
    assert route.by_domain and route.score == 0.0
    assert because in route.why and "first-registered" in route.why


def test_candidates_of_other_domains_are_ignored() -> None:
    """A candidate list polluted with another brand's agent never routes there."""
    mixed = [Candidate("help@bose.example"), *SONOS]
    route = choose_recipient("sonos.example", TEXT, mixed, None)
    assert route.address == "support@sonos.example"


def test_domain_without_agents_is_unknown() -> None:
    """A bare domain nobody registered agents for is unknown_recipient naming the domain."""
    with pytest.raises(UnknownRecipient) as caught:
        choose_recipient("nobody.example", TEXT, [], None)
    assert caught.value.fields["domain"] == "nobody.example"
    assert "nobody.example" in caught.value.detail


def test_bare_domain_detection() -> None:
    """Only a `to` without '@' is a brand domain."""
    assert is_bare_domain("sonos.example")
    assert not is_bare_domain("support@sonos.example")
