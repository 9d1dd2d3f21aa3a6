"""The `Language` port: what the gateway needs to understand English messages.

Three questions, each answered with an explanation (`why`) so a brand's staff can see why a
message went where it did and why an escalation opened:

- `route`: which of a brand's agents fits a message best (or none);
- `signals`: does the sender ask for a person, are they frustrated;
- `summarise`: a task told briefly for the human who takes it over.

The methods are coroutines because one adapter (OpenAI-compatible models) does network I/O;
the rule-based default computes synchronously inside them. Adapters live in
`gateway/language/`; this module only defines the shapes, so `routing` stays pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Candidate:
    """A brand agent that could take a message, as its public card describes it."""

    address: str
    description: str = ""
    skills: tuple[str, ...] = ()
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """The best candidate for a text, or `address=None` when nothing fits."""

    address: str | None
    score: float
    why: str


@dataclass(frozen=True, slots=True)
class Signals:
    """What a message says about its sender, beyond its topic."""

    wants_human: bool
    frustrated: bool
    confidence: float
    why: str


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a task's history, reduced to what the language layer reads."""

    sender: str
    side: str  # "initiator", "responder", "operator" or "gateway"
    act: str
    text: str
    data: tuple[object, ...] = ()  # the `data` members of the envelope's data parts


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task as the summariser sees it."""

    id: str
    initiator: str
    responder: str
    state: str
    turns: tuple[Turn, ...]
    reason: str | None = None  # the escalation's reason code, when summarising for one
    reason_text: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Language(Protocol):
    """The port. Implementations must never raise for ordinary text."""

    async def route(self, text: str, candidates: Sequence[Candidate]) -> RouteChoice:
        """Pick the candidate that fits `text` best, or none (address None)."""
        ...

    async def rank(self, query: str, candidates: Sequence[Candidate]) -> list[RouteChoice]:
        """Every candidate with its score for `query`, best first (directory search)."""
        ...

    async def signals(self, text: str, history: Sequence[Turn]) -> Signals:
        """Does the sender of `text` (with the task's `history` before it) want a person, or
        show frustration?"""
        ...

    async def summarise(self, task: TaskView) -> str:
        """A short plain-text account of the task for an operator."""
        ...
