"""Which agent receives an envelope: an explicit address, or a brand domain routed by fit.

PROTOCOL.md section 1: a bare brand domain is valid only as the `to` of a task's first
envelope; the gateway then picks the brand agent whose skills fit the message best, and that
agent is the task's responder from then on. Asking the `Language` port is I/O (it may call a
model), so the gateway awaits `language.route(text, candidates)` and passes its answer here;
this function only decides, and explains the decision in `why`.

Choices where the protocol is silent:
    * When the language layer finds no fit (or was not asked, or names an address that is
      not one of the brand's agents), the envelope goes to the brand's first-registered
      agent: the one a brand sets up first is, in practice, its general front door. `why`
      says so, so the brand's staff can see why.
    * Candidates outside the routed domain are ignored: a language adapter can never route a
      message away from the brand the sender wrote to.
    * An explicit address is returned as it is; whether it exists is the gateway's lookup
      (`unknown_recipient` there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from routing.errors import UnknownRecipient
from routing.language import Candidate, RouteChoice


@dataclass(frozen=True, slots=True)
class Route:
    """Where an envelope goes and why.

    Attributes:
        address: The concrete recipient.
        score: How well it fits (1.0 for an explicit address, 0.0 for the fallback).
        why: A sentence for the brand's staff and the logs.
        by_domain: True when the sender wrote to a bare brand domain.
    """

    address: str
    score: float
    why: str
    by_domain: bool


def is_bare_domain(to: str) -> bool:
    """A `to` without a local part names a brand, not an agent."""
    return "@" not in to


def choose_recipient(
    to: str,
    text: str,
    candidates: Sequence[Candidate],
    choice: RouteChoice | None,
) -> Route:
    """Resolve `to` to one agent.

    Args:
        to: The envelope's `to`: an address or a bare brand domain.
        text: The envelope's `body.text`. The port has already read it; it is part of the
            signature so that callers pass what routing is about, and is not read here.
        candidates: The brand's active agents, in registration order.
        choice: The language port's answer for (text, candidates), or None if not asked.

    Raises:
        UnknownRecipient: A bare domain with no registered agent under it.
    """
    if not is_bare_domain(to):
        return Route(address=to, score=1.0, why=f"addressed to {to} directly", by_domain=False)
    domain = to.lower()
    mine = [c for c in candidates if c.address.lower().rpartition("@")[2] == domain]
    if not mine:
        raise UnknownRecipient(
            f"No agent is registered for {domain}; check the domain, or search the directory "
            "(GET /v1/directory) for the brand's agents.",
            domain=domain,
        )
    known = {c.address for c in mine}
    if choice is not None and choice.address is not None and choice.address in known:
        return Route(address=choice.address, score=choice.score, why=choice.why, by_domain=True)
    first = mine[0]
    if choice is None:
        reason = "the message was not matched against the brand's agents"
    elif choice.address is None:
        reason = f"no agent's skills clearly fit the message ({choice.why})"
    else:
        reason = f"the suggested {choice.address} is not an agent of {domain}"
    return Route(
        address=first.address,
        score=0.0,
        why=f"{reason}; sent to {domain}'s first-registered agent, {first.address}",
        by_domain=True,
    )
