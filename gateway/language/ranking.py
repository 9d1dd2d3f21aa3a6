"""Ranking brand agents against a message: concepts and words, weighted like TF-IDF.

Each agent is profiled once from its card: the concepts and word stems of each skill phrase
and of its description (and its address's local part, which brands name for the topic:
`orders@`). A message is scored against every profile: a concept or word counts by how
strongly the message says it, by how rare it is among the agents (the BM25 inverse document
frequency, normalised so a concept only one agent has counts 1), and by where the agent says
it: a skill counts twice a description. Concepts outweigh bare words, because the lexicon
already knows the many ways a customer says them. The brand's own name says nothing about
which of its agents fits, so it is ignored.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.language.lexicon import DEFAULT_LEXICON, PARENT_FACTOR, Lexicon
from gateway.language.literals import necessary_words
from gateway.language.text import (
    Corrector,
    Token,
    is_content,
    normalise,
    stem,
    tokens,
    words,
)
from routing.language import Candidate, RouteChoice

SKILL_WEIGHT = 2.0
DESCRIPTION_WEIGHT = 1.0
WORD_FACTOR = 0.5
LITERAL_FACTOR = 0.25
"""A word the lexicon already read as a concept counts again, faintly, where an agent's card
uses that very word: of two agents sharing a concept, the one that says "overdrafts" beats the
one that only says "mortgages" for "my overdraft"."""
CONTEXT_FACTOR = 0.3
"""Thanks for earlier help and what precedes "separate thing:" are context, not the topic."""
_SHIFT = re.compile(
    r"\b(?:separate|another|different|unrelated|other) (?:thing|question|issue|matter|query|"
    r"point|note)\b|\bon another note\b|\bunrelated\b"
)
_SHIFT_WORDS = necessary_words(_SHIFT)
"""Words one of which every shift of topic says ("other", "separate", …): most messages have
none, and are not searched for one."""
_THANKS = re.compile(r"^\W*(?:thanks|thank you|cheers|many thanks)\b[^.!?]*[.!?]+")
MAX_QUERY_WEIGHT = 1.5
_WORDS_KEPT = 16384
"""Words a ranker remembers read (stem, correction, content or not). References and numbers
make many words unique, so the memo is emptied when full rather than closed to new words:
the common ones are back after a few messages."""
ROUTE_THRESHOLD = 0.75
"""The least score that routes: one concept said plainly in one agent's skills scores 2, a
vague word 0.2-0.5 in a description and 0.8 in a skill; below this the message names no topic."""


@dataclass(frozen=True, slots=True)
class Features:
    """What a text says: concept -> (weight, words that said it), and content word stems."""

    concepts: dict[str, tuple[float, tuple[str, ...]]]
    stems: dict[str, str]  # stem -> a surface form, for explanations
    derived: frozenset[str] = frozenset()  # concepts said only through a narrower one
    literal: tuple[tuple[str, str], ...] = ()  # (stem, concept) the lexicon read the stem as


@dataclass(frozen=True, slots=True)
class _Profile:
    candidate: Candidate
    concepts: dict[str, tuple[float, str]]  # concept -> (field weight, the field's text)
    stems: dict[str, tuple[float, str]]
    literal: dict[str, tuple[float, str]]


def features(
    text: str, lexicon: Lexicon = DEFAULT_LEXICON, corrector: Corrector | None = None
) -> Features:
    """Concepts and content words of `text`, with typos corrected by `corrector`."""
    toks = [_corrected(t, corrector) for t in tokens(text)]
    return _features(toks, [is_content(t) for t in toks], lexicon)


def _features(toks: list[Token], content: list[bool], lexicon: Lexicon) -> Features:
    """`features` of tokens already corrected, `content` saying which are content words."""
    hits, used = lexicon.hits(toks)
    concepts: dict[str, tuple[float, tuple[str, ...]]] = {}
    for hit in hits:
        weight, surfaces = concepts.get(hit.concept, (0.0, ()))
        if hit.surface not in surfaces:
            surfaces = (*surfaces, hit.surface)
        concepts[hit.concept] = (min(weight + hit.weight, MAX_QUERY_WEIGHT), surfaces)
    read = list(zip(toks, used, content, strict=True))
    stems = {t.stem: t.surface for t, u, c in read if u is None and c}
    literal = tuple((t.stem, u) for t, u, c in read if u and c)
    direct = {hit.concept for hit in hits if not hit.derived}
    return Features(concepts, stems, frozenset(c for c in concepts if c not in direct), literal)


def _merged(context: Features, topic: Features) -> Features:
    """`topic` with `context`'s concepts and words added at `CONTEXT_FACTOR`."""
    concepts = dict(topic.concepts)
    for concept, (weight, surfaces) in context.concepts.items():
        own, said = concepts.get(concept, (0.0, ()))
        concepts[concept] = (min(own + weight * CONTEXT_FACTOR, MAX_QUERY_WEIGHT), said or surfaces)
    derived = frozenset(c for c in concepts if c in context.derived | topic.derived)
    return Features(concepts, topic.stems, derived, topic.literal)


def _mentions(text: str, words: tuple[str, ...] | None) -> bool:
    """Whether `text` holds one of `words` (None: whether it may, so yes)."""
    return words is None or any(word in text for word in words)


def _corrected(token: Token, corrector: Corrector | None) -> Token:
    if corrector is None or not is_content(token):
        return token
    fixed = corrector.correct(token.stem)
    return Token(token.surface, fixed) if fixed else token


def _brand_words(address: str) -> set[str]:
    domain = address.rpartition("@")[2]
    labels = domain.split(".")[:-1] if "." in domain else [domain]
    return {stem(part) for label in labels for part in label.split("-") if part}


class Ranker:
    """Scores messages against a set of candidates; build one per candidate set."""

    def __init__(self, candidates: Sequence[Candidate], lexicon: Lexicon = DEFAULT_LEXICON) -> None:
        self._lexicon = lexicon
        self._profiles = [self._profile(c) for c in candidates]
        vocab = set(lexicon.vocabulary)
        for p in self._profiles:
            vocab.update(s for s in p.stems if len(s) >= 4)
        self._corrector = Corrector(frozenset(vocab))
        self._words: dict[str, tuple[Token, bool]] = {}
        n = len(self._profiles)
        df: dict[str, int] = defaultdict(int)
        for p in self._profiles:
            keys = {*(f"c:{c}" for c in p.concepts), *(f"w:{s}" for s in p.stems)}
            for key in keys | {f"l:{s}" for s in p.literal}:
                df[key] += 1
        top = _bm25_idf(n, 1)
        self._idf = {key: _bm25_idf(n, d) / top for key, d in df.items()}

    def _profile(self, candidate: Candidate) -> _Profile:
        fields = [(skill, SKILL_WEIGHT) for skill in candidate.skills]
        fields += [(candidate.description, DESCRIPTION_WEIGHT)]
        fields += [(candidate.display_name, DESCRIPTION_WEIGHT)]
        fields += [(candidate.address.partition("@")[0], DESCRIPTION_WEIGHT)]
        brand = _brand_words(candidate.address)
        concepts: dict[str, tuple[float, str]] = {}
        stems: dict[str, tuple[float, str]] = {}
        literal: dict[str, tuple[float, str]] = {}
        for text, weight in fields:
            if not text:
                continue
            f = features(text, self._lexicon)
            for concept in f.concepts:
                said = weight * (PARENT_FACTOR if concept in f.derived else 1.0)
                if concepts.get(concept, (0.0, ""))[0] < said:
                    concepts[concept] = (said, text)
            for s in f.stems:
                if s not in brand and stems.get(s, (0.0, ""))[0] < weight:
                    stems[s] = (weight, text)
            for s in {s for s, _ in f.literal} | f.stems.keys():
                if literal.get(s, (0.0, ""))[0] < weight:
                    literal[s] = (weight, text)
        return _Profile(candidate, concepts, stems, literal)

    def rank(self, text: str) -> list[RouteChoice]:
        """Every candidate with its score and the reasons, best first (stable on ties)."""
        query = self._query(text)
        scored = [(self._score(p, query), i, p) for i, p in enumerate(self._profiles)]
        scored.sort(key=lambda item: (-item[0][0], item[1]))
        return [
            RouteChoice(p.candidate.address, round(score, 4), why) for (score, why), _, p in scored
        ]

    def _query(self, text: str) -> Features:
        """The features of `text`, with thanks for past help and pre-"separate thing" context
        discounted so that the request that follows decides the route."""
        flat = normalise(text)
        cut = 0
        thanks = _THANKS.match(flat)
        if thanks and thanks.end() < len(flat.rstrip()):
            cut = thanks.end()
        shifts = list(_SHIFT.finditer(flat)) if _mentions(flat, _SHIFT_WORDS) else []
        if shifts:
            cut = max(cut, shifts[-1].start())
        if not cut:
            return self._features(text)
        return _merged(self._features(flat[:cut]), self._features(flat[cut:]))

    def _features(self, text: str) -> Features:
        """`features(text, lexicon, corrector)`, each word stemmed, corrected and judged a
        content word once per ranker rather than once per message (messages to one brand
        share most of their words)."""
        toks: list[Token] = []
        content: list[bool] = []
        for word in words(text):
            known = self._words.get(word)
            if known is None:
                token = _corrected(Token(word, stem(word)), self._corrector)
                known = (token, is_content(token))
                if len(self._words) >= _WORDS_KEPT:
                    self._words.clear()
                self._words[word] = known
            toks.append(known[0])
            content.append(known[1])
        return _features(toks, content, self._lexicon)

    def route(self, text: str) -> RouteChoice:
        """The best candidate, or `address=None` when no candidate reaches the threshold."""
        ranked = self.rank(text)
        if not ranked:
            return RouteChoice(None, 0.0, "no candidates to choose from")
        best = ranked[0]
        if best.score < ROUTE_THRESHOLD:
            said = "no topic words" if best.score == 0 else f"too little ({best.why})"
            return RouteChoice(None, best.score, f"nothing fits: {said}")
        if len(ranked) > 1 and ranked[1].score == best.score:
            return RouteChoice(
                best.address, best.score, f"{best.why} (tied with {ranked[1].address})"
            )
        return best

    def _score(self, profile: _Profile, query: Features) -> tuple[float, str]:
        score = 0.0
        reasons: list[tuple[float, str]] = []
        for concept, (weight, surfaces) in query.concepts.items():
            if concept not in profile.concepts:
                continue
            field_weight, field = profile.concepts[concept]
            part = weight * field_weight * self._idf[f"c:{concept}"]
            score += part
            said = ", ".join(f"'{s}'" for s in surfaces)
            reasons.append((part, f"{concept} ({said}) ~ '{field}'"))
        for s, surface in query.stems.items():
            if s not in profile.stems:
                continue
            field_weight, field = profile.stems[s]
            part = WORD_FACTOR * field_weight * self._idf[f"w:{s}"]
            score += part
            reasons.append((part, f"word '{surface}' ~ '{field}'"))
        for s, concept in query.literal:
            if s not in profile.literal or concept not in profile.concepts:
                continue
            field_weight, field = profile.literal[s]
            part = LITERAL_FACTOR * field_weight * self._idf[f"l:{s}"]
            score += part
            reasons.append((part, f"same word '{s}' ~ '{field}'"))
        reasons.sort(key=lambda r: -r[0])
        why = "; ".join(r for _, r in reasons) if reasons else "no matching terms"
        return score, why


def _bm25_idf(n: int, df: int) -> float:
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))
