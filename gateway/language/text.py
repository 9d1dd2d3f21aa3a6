"""Tokenisation, a light stemmer and typo correction for short customer-service English.

Messages are one or two sentences, often typed on a phone: the tokeniser keeps contractions as
one token (`won't` -> `wont`) so negation patterns can see them, and the stemmer only folds the
common English inflections so that `shipped`, `shipping` and `ships` meet at `ship` without
the over-reach of a full Porter stemmer.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

_STOPWORD_TEXT = """
    a about above after again all also am an and any are as at be been before being below
    between both but by can could did do does doing down during each few for from further get
    got had has have having he her here hers him his how i if in into is it its itself just
    let me more most my myself no nor not now of off on once only or other our ours out over
    own same she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom why
    will with would you your yours yourself hi hello hey please thanks thank ok okay yes yeah
    im ive id ill youre dont doesnt didnt cant wont isnt arent wasnt werent hasnt havent
    customer service team help question thing something anything everything still really
    want need like would could may might must shall one two three get know tell say said
    us use using used make made way back well good great much many time today yesterday day
    week weeks month months year years new last next first second again ever even
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words too common in customer-service English to say anything about a topic.

`back`, `new` and similar are here because they join phrases (`money back`, `new booking`)
that the lexicon matches before stop words are dropped; on their own they carry nothing.
"""


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a message: what was typed (lowercased) and its stem."""

    surface: str
    stem: str


@lru_cache(maxsize=4096)
def normalise(text: str) -> str:
    """Lowercase, fold accents and curly quotes, so patterns need one spelling only.

    Cached: the signals and frustration rules normalise the same message several times.
    """
    if text.isascii():  # nothing to decompose, no accent or curly quote to fold
        return text.replace("`", "'").lower()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").lower()


def words(text: str) -> list[str]:
    """The words of `text`, lowercased, contractions joined (`don't` -> `dont`)."""
    flat = normalise(text)
    found: list[str] = _WORD.findall(flat)
    if "'" not in flat:  # no contraction to join (most messages): no pass over the words
        return found
    return [w.replace("'", "") for w in found]


@lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """Fold plural, past, gerund and adverb endings; idempotent on its own output."""
    w = word
    if len(w) <= 3 or w.isdigit():
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ingly", "edly", "ing", "ed", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]
            break
    if w.endswith("e") and len(w) > 4:
        w = w[:-1]
    return w


def tokens(text: str) -> list[Token]:
    """The message as tokens, stop words included (phrases need them)."""
    return [Token(w, stem(w)) for w in words(text)]


def is_content(token: Token) -> bool:
    """Whether a token may carry a topic on its own (not a stop word, not a bare number)."""
    return token.surface not in STOPWORDS and not token.surface.isdigit() and len(token.stem) > 1


def edit_distance_at_most_one(a: str, b: str) -> bool:
    """True when `a` and `b` differ by at most one insertion, deletion, substitution or swap."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diffs = [i for i in range(la) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    short, long_ = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


MIN_CORRECTED = 5
"""Only stems of five letters or more are corrected: shorter words have too many neighbours
(`bag`, `bug`, `big`) for a guess to be safe."""


def correct(word: str, vocabulary: frozenset[str]) -> str | None:
    """The one vocabulary word within a single edit of an unknown `word`, if exactly one.

    A linear scan, for one-off use; `Corrector` is the indexed form the ranking uses.
    """
    if len(word) < MIN_CORRECTED or word in vocabulary:
        return None
    matches = {v for v in vocabulary if len(v) >= 4 and edit_distance_at_most_one(word, v)}
    return next(iter(matches)) if len(matches) == 1 else None


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


class Corrector:
    """`correct` against a fixed vocabulary, indexed by single deletions and memoised.

    Two words within one edit (insertion, deletion, substitution or swap of neighbours) share
    a single-deletion form or one is a deletion of the other, so the index yields every
    candidate without scanning the vocabulary; `edit_distance_at_most_one` then confirms it.
    """

    def __init__(self, vocabulary: frozenset[str]) -> None:
        self._vocabulary = vocabulary
        index: dict[str, set[str]] = {}
        for v in vocabulary:
            if len(v) >= 4:
                for key in {v} | _deletions(v):
                    index.setdefault(key, set()).add(v)
        self._index = index
        self._memo: dict[str, str | None] = {}

    def correct(self, word: str) -> str | None:
        """The one vocabulary word within a single edit of an unknown `word`, if exactly one."""
        if word in self._memo:
            return self._memo[word]
        fixed: str | None = None
        if len(word) >= MIN_CORRECTED and word not in self._vocabulary:
            near: set[str] = set()
            for key in {word} | _deletions(word):
                near |= self._index.get(key, set())
            matches = {v for v in near if edit_distance_at_most_one(word, v)}
            fixed = next(iter(matches)) if len(matches) == 1 else None
        if len(self._memo) < 65536:
            self._memo[word] = fixed
        return fixed
