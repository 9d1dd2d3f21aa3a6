"""`RulesLanguage`: the deterministic, offline adapter of the `Language` port (the default).

Routing ranks agents by the concepts and words of their cards (`ranking`), the escalation
triggers are pattern rules (`signals`), and summaries are extractive (`summary`). Every answer
says why. Rankers are cached per candidate set, since a brand's agents change rarely and the
same set is asked about for every first message to that brand.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from gateway.language.frustration import frustration
from gateway.language.ranking import Ranker
from gateway.language.signals import human_request
from gateway.language.summary import summarise as extractive_summary
from routing.language import Candidate, RouteChoice, Signals, TaskView, Turn

_RANKERS = 64


class RulesLanguage:
    """Routes, detects escalation signals and summarises with rules only; never raises."""

    def __init__(self) -> None:
        self._rankers: OrderedDict[tuple[Candidate, ...], Ranker] = OrderedDict()

    def _ranker(self, candidates: Sequence[Candidate]) -> Ranker:
        key = tuple(candidates)
        ranker = self._rankers.get(key)
        if ranker is None:
            ranker = self._rankers[key] = Ranker(key)
            if len(self._rankers) > _RANKERS:
                self._rankers.popitem(last=False)
        else:
            self._rankers.move_to_end(key)
        return ranker

    async def route(self, text: str, candidates: Sequence[Candidate]) -> RouteChoice:
        """The candidate whose card fits `text` best, or none when nothing fits."""
        return self.route_now(text, candidates)

    def route_now(self, text: str, candidates: Sequence[Candidate]) -> RouteChoice:
        """`route`, synchronously (the CLI and other adapters' fallbacks use it)."""
        return self._ranker(candidates).route(text)

    async def rank(self, query: str, candidates: Sequence[Candidate]) -> list[RouteChoice]:
        """Every candidate scored for `query`, best first (directory search)."""
        return self._ranker(candidates).rank(query)

    async def signals(self, text: str, history: Sequence[Turn]) -> Signals:
        """Whether the sender asks for a person or is frustrated, with the rules that fired."""
        return self.signals_now(text, history)

    def signals_now(self, text: str, history: Sequence[Turn] = ()) -> Signals:
        """`signals`, synchronously."""
        asked, declined = human_request(text)
        upset = frustration(text, history)
        reasons: list[str] = []
        if asked:
            said = ", ".join(f"'{f.words}'" for f in asked[:3])
            reasons.append(f"asks for a person ({said})")
        elif declined:
            reasons.append(f"mentions a person but declines ('{declined[0].words}' negated)")
        if upset:
            said = ", ".join(f"{f.rule} '{f.words}'" for f in upset[:4])
            reasons.append(f"frustrated: {said}")
        confidence = 0.75 if not (asked or upset) else min(0.95, 0.6 + 0.15 * len(asked + upset))
        return Signals(
            wants_human=bool(asked),
            frustrated=bool(upset),
            confidence=round(confidence, 2),
            why="; ".join(reasons) or "no request for a person, no sign of frustration",
        )

    async def summarise(self, task: TaskView) -> str:
        """An extractive account of `task` for an operator (reason, opening, data, latest)."""
        return extractive_summary(task)
