"""Necessary literals: strings of which every match of a pattern contains at least one.

The rule layer searches each message with a few very large patterns, and Python's engine
tries every alternative at every position of the text, so a search costs tens of
microseconds even when nothing matches, which is almost always. Every wording a rule knows is
built on some fixed words ("talk", "human", "escalat", "third time"), and finding that a
message holds none of them takes a handful of substring tests. `Prefilter` makes that test
from the pattern itself, so a rule edited tomorrow keeps a correct filter with no list to
maintain by hand.

The literals are read off the pattern's syntax tree. A sequence of items whose possible
strings are few and known (literal characters, small character classes, alternatives of such,
optional parts) is multiplied out into the strings it can match; any other item (`\\w+`, `.`)
breaks the sequence. A sequence needs one of the strings of its most selective mandatory run;
alternatives need one of the union of what each alternative needs; an optional part needs
nothing. Word boundaries are kept in the literals (the filter is itself a small pattern);
other zero-width items (`^`, `$`, look-arounds) are dropped, which only makes the filter more
permissive, never wrong. Anything the reader does not know (case-insensitive matching, back
references, flags set inside a group, NUL characters, operations a later Python adds) yields
no literals, and the filter then always says "may match". The tree comes from `re._parser`,
Python's own (private) pattern parser; an opcode this module does not know is read as "any
string", so a change there can only make the filter weaker, never wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from re import _constants as c  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

from gateway.language.text import STOPWORDS

_MAX_STRINGS = 512
"""Products of alternatives larger than this stop being multiplied out."""

_SPLITS = 3
"""How many mixed alternatives of one sequence are read both ways (each doubles the work)."""

_MAX_REPEAT = 8
"""A repeat of known strings is multiplied out only up to this many times (`a{0,3000}` is not)."""

_MAX_CLASS = 8
"""A character class with more members than this is treated as any character."""

_BOUNDARY = "\x00"
"""Stands for `\\b` inside a literal: the filter keeps word boundaries, so the literal "ai"
of `\\bai\\b` does not pass "again"."""


_FLAGS_THAT_CHANGE_MATCHING = (
    c.SRE_FLAG_IGNORECASE | c.SRE_FLAG_ASCII | c.SRE_FLAG_UNICODE | c.SRE_FLAG_LOCALE
)
"""Inline flags that change what a literal or `\\b` matches inside their group."""


class _Unsupported(Exception):
    """The pattern uses something whose literals cannot be read safely."""


@dataclass(frozen=True, slots=True)
class _Part:
    """What is known of the strings one item (or sequence) can match."""

    exact: frozenset[str] | None = None  # all of them, when few and known
    needs: frozenset[str] | None = None  # every match contains one of these
    halves: tuple[_Part, _Part] | None = None  # alternatives: the known ones, the others
    starts: frozenset[str] | None = None  # every match begins with one of these, when known


def literals(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Strings of which every match of `pattern` contains one, or None when none are known."""
    if pattern.flags & re.IGNORECASE:
        return None
    try:
        needs = _sequence(list(_parser.parse(pattern.pattern, pattern.flags))).needs
    except (_Unsupported, RecursionError):
        return None
    return _minimal(needs) if needs is not None else None


def necessary_words(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Plain strings one of which every match of `pattern` contains (the longest word of each
    of its literals, those that contain another dropped), or None when none are known.

    For a pattern of a few fixed phrases these are a few words, and testing a text with `in`
    for each (in C, tens of nanoseconds) says "no match" before a search (about 1.5 µs) does.
    """
    found = literals(pattern)
    pieces = [string.replace(_BOUNDARY, " ").split() for string in found or ()]
    if not pieces or not all(pieces):
        return None
    return tuple(sorted(_minimal(frozenset(max(words, key=len) for words in pieces))))


class Prefilter:
    """A quick necessary condition for `pattern.search(text)`: False means no match.

    The literals are read on first use, so importing the rules costs nothing extra. With a
    `gate`, the gate's one search for the literals of all its prefilters is asked first.
    """

    __slots__ = ("_gate", "_pattern", "_search", "_strings")

    def __init__(self, pattern: re.Pattern[str], *, gate: Gate | None = None) -> None:
        self._pattern = pattern
        self._strings: tuple[str, ...] | None = None
        self._search: Callable[[str], object] | None = None
        self._gate = gate
        if gate is not None:
            gate.add(self)

    @property
    def strings(self) -> tuple[str, ...] | None:
        """The literals tested (None: the filter cannot exclude anything)."""
        self._read()
        return self._strings

    def may_match(self, text: str) -> bool:
        """Whether the pattern may match somewhere in `text` (False is certain)."""
        if self._gate is not None and not self._gate.may_match(text):
            return False
        search = self._search or self._read()
        return search(text) is not None

    def _read(self) -> Callable[[str], object]:
        if self._search is None:
            found = literals(self._pattern)
            self._strings = tuple(sorted(found)) if found else None
            if self._strings:
                flags = self._pattern.flags & re.ASCII  # what `\b` means
                self._search = re.compile(_trie(self._strings), flags).search
            else:
                self._search = _anything
        return self._search


def _anything(_text: str) -> bool:
    return True


class Gate:
    """One search standing in for several prefilters asked about the same text in turn.

    The rules ask four prefilters about each message's normalised text, and for most messages
    all four say no: four searches of about 3 µs each. A gate searches once for the literals
    of all its prefilters (the minimal union, so one trie) and remembers its answer for the
    last text it was asked about. When that text holds none of the literals, every prefilter
    of the gate says no without its own search; otherwise each searches as it would alone.
    A gate with a prefilter that cannot exclude anything, or whose prefilters disagree on
    what `\b` means, never says no.
    """

    __slots__ = ("_filters", "_last", "_search")

    def __init__(self) -> None:
        self._filters: list[Prefilter] = []
        self._search: Callable[[str], object] | None = None
        self._last: tuple[str | None, bool] = (None, True)

    def add(self, prefilter: Prefilter) -> None:
        """Let `prefilter` be answered by this gate first (the union is read again)."""
        self._filters.append(prefilter)
        self._search = None
        self._last = (None, True)

    def may_match(self, text: str) -> bool:
        """Whether any of the gate's prefilters may match in `text` (False is certain)."""
        last = self._last  # one read: the pair is replaced whole, never changed in place
        if last[0] == text:
            return last[1]
        search = self._search or self._read()
        answer = search(text) is not None
        self._last = (text, answer)
        return answer

    def _read(self) -> Callable[[str], object]:
        found: set[str] = set()
        flags = {filter_._pattern.flags & re.ASCII for filter_ in self._filters}
        for filter_ in self._filters:
            strings = filter_.strings
            if strings is None:
                found.clear()
                break
            found.update(strings)
        if found and len(flags) == 1:
            union = tuple(sorted(_minimal(frozenset(found))))
            self._search = re.compile(_trie(union), flags.pop()).search
        else:
            self._search = _anything
        return self._search


def _trie(strings: tuple[str, ...]) -> str:
    """A pattern matching any of `strings`, nested by common prefix so that the engine
    follows one branch per character instead of trying every string at every position."""
    root: dict[str, Any] = {}
    for string in strings:
        node = root
        for char in string:
            node = node.setdefault(char, {})
        node[""] = {}  # a string ends here (none continues it: the set is minimal)
    return _render(root)


def _render(node: dict[str, Any]) -> str:
    if "" in node:
        return ""
    branches = [
        (r"\b" if char == _BOUNDARY else re.escape(char)) + _render(child)
        for char, child in sorted(node.items())
    ]
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


def _minimal(strings: frozenset[str]) -> frozenset[str]:
    """Drop each string that contains another of the set: testing the shorter one suffices."""
    kept: set[str] = set()
    lengths: set[int] = set()
    for string in sorted(strings, key=len):
        if not any(
            string[start : start + length] in kept
            for length in lengths
            for start in range(len(string) - length + 1)
        ):
            kept.add(string)
            lengths.add(len(string))
    return frozenset(kept)


def _empty(string: str) -> bool:
    """Whether `string` stands for no characters at all (only boundaries, or nothing)."""
    return not string.replace(_BOUNDARY, "")


def _score(strings: frozenset[str]) -> tuple[int, int, int]:
    """Fewest common words first (" to " is in most messages), then the longer shortest
    string (rarer in text), then fewer strings."""
    visible = [s.replace(_BOUNDARY, " ") for s in strings]
    common = sum(1 for s in visible if len(s.strip()) < 3 or set(s.split()) <= STOPWORDS)
    return (-common, min(len(s) for s in strings), -len(strings))


def _best(candidates: list[frozenset[str]]) -> frozenset[str] | None:
    usable = [c for c in candidates if c and not any(_empty(s) for s in c)]
    return max(usable, key=_score) if usable else None


def _sequence(items: list[tuple[Any, Any]]) -> _Part:
    parts = [_item(op, av) for op, av in _boundaries_inside(items)]
    return parts[0] if len(parts) == 1 else _split(parts, _SPLITS)


def _boundaries_inside(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """`items` with a `\\b` before alternatives moved into each (`\\b(?:a|b)` is
    `\\ba|\\bb`): Python's parser takes a boundary common to all alternatives out of
    them, and each alternative's literals can keep it only from inside."""
    moved: list[tuple[Any, Any]] = []
    for op, av in items:
        if op is c.BRANCH and moved and moved[-1] == (c.AT, c.AT_BOUNDARY):
            boundary = moved.pop()
            av = (av[0], [[boundary, *alternative] for alternative in av[1]])
        moved.append((op, av))
    return moved


def _split(parts: list[_Part], splits: int) -> _Part:
    """`_fold`, and where alternatives mix known strings with others (`bots?|ai|automated
    \\w+`), also the sequence read twice, once with each half, if that needs rarer strings
    ("not the ai" rather than "ai")."""
    whole = _fold(parts)
    at = next((i for i, part in enumerate(parts) if part.halves), None)
    if not splits or at is None:
        return whole
    halves = parts[at].halves
    assert halves is not None
    sides = [_split([*parts[:at], half, *parts[at + 1 :]], splits - 1).needs for half in halves]
    if sides[0] is None or sides[1] is None:
        return whole
    needs = sides[0] | sides[1]
    if whole.needs is None or _score(needs) > _score(whole.needs):
        return _Part(exact=whole.exact, needs=needs, starts=whole.starts)
    return whole


def _fold(parts: list[_Part]) -> _Part:
    run: frozenset[str] = frozenset({""})
    whole: frozenset[str] | None = frozenset({""})
    candidates: list[frozenset[str]] = []
    starts: frozenset[str] | None = None
    opened = False  # whether a part not known exactly was met (`starts` is then decided)
    for part in parts:
        if part.exact is not None:
            if len(run) * len(part.exact) <= _MAX_STRINGS:
                run = frozenset(a + b for a, b in product(run, part.exact))
            else:
                candidates.append(run)
                run = part.exact
            if whole is not None:
                whole = (
                    frozenset(a + b for a, b in product(whole, part.exact))
                    if len(whole) * len(part.exact) <= _MAX_STRINGS
                    else None
                )
        else:
            if not opened:
                starts = None if whole is None else _joined(whole, part.starts)
                opened = True
            if run != {""} and part.starts is not None:
                # What a part begins with follows the exact run before it directly: "\\b"
                # before a list of words needs each word from a word's start.
                candidates.append(_joined(run, part.starts))
            candidates.append(run)
            run = frozenset({""})
            whole = None
            if part.needs is not None:
                candidates.append(part.needs)
    candidates.append(run)
    return _Part(exact=whole, needs=_best(candidates), starts=whole if not opened else starts)


def _joined(heads: frozenset[str], tails: frozenset[str] | None) -> frozenset[str]:
    """Each of `heads` followed by each of `tails` (unknown: by anything), while few."""
    if tails is None or (len(heads) > 1 and len(heads) * len(tails) > _MAX_STRINGS):
        return heads
    return frozenset(a + b for a, b in product(heads, tails))


def _item(op: Any, av: Any) -> _Part:
    if op is c.LITERAL:
        if chr(av) == _BOUNDARY:
            raise _Unsupported("a NUL character, which stands for a word boundary here")
        return _exact(frozenset({chr(av)}))
    if op is c.AT and av is c.AT_BOUNDARY:
        return _exact(frozenset({_BOUNDARY}))
    if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
        return _Part(exact=frozenset({""}))  # zero width: ignoring its condition is permissive
    if op is c.IN:
        members = [chr(value) for kind, value in av if kind is c.LITERAL]
        if len(members) == len(av) and len(members) <= _MAX_CLASS:
            return _exact(frozenset(members))
        return _Part()
    if op is c.SUBPATTERN:
        _group, add_flags, del_flags, body = av
        if (add_flags | del_flags) & _FLAGS_THAT_CHANGE_MATCHING:
            raise _Unsupported("a group with its own case or word-character flags")
        return _sequence(list(body))
    if op is c.ATOMIC_GROUP:
        return _sequence(list(av))
    if op is c.BRANCH:
        return _branch([_sequence(list(alternative)) for alternative in av[1]])
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        low, high, body = av
        return _repeat(low, high, _sequence(list(body)))
    if op in (c.GROUPREF, c.GROUPREF_EXISTS, c.GROUPREF_IGNORE):
        raise _Unsupported("back reference")
    return _Part()  # any character, a category, a negated class: no literal known


def _exact(strings: frozenset[str]) -> _Part:
    return _Part(exact=strings, needs=None if any(_empty(s) for s in strings) else strings)


def _branch(alternatives: list[_Part]) -> _Part:
    exact: frozenset[str] | None = frozenset()
    for alternative in alternatives:
        if exact is None or alternative.exact is None:
            exact = None
        else:
            exact = exact | alternative.exact
            if len(exact) > _MAX_STRINGS:
                exact = None
    halves = None
    known = [a.exact for a in alternatives if a.exact is not None]
    others = [a.needs for a in alternatives if a.exact is None]
    if exact is None and known and None not in others:
        union = frozenset().union(*known)
        if len(union) <= _MAX_STRINGS:
            rest = frozenset().union(*(needs for needs in others if needs is not None))
            halves = (_exact(union), _Part(needs=rest))
    heads = [_starts(alternative) for alternative in alternatives]
    starts = None if None in heads else frozenset().union(*heads)  # type: ignore[arg-type]
    needs: frozenset[str] = frozenset()
    for alternative in alternatives:
        if alternative.needs is None:
            # One alternative needs nothing: neither does the whole.
            return _Part(exact=exact, halves=halves, starts=starts)
        needs |= alternative.needs
    return _Part(exact=exact, needs=needs, halves=halves, starts=starts)


def _starts(part: _Part) -> frozenset[str] | None:
    """Strings one of which every match of `part` begins with, if known."""
    return part.exact if part.exact is not None else part.starts


def _repeat(low: int, high: int, body: _Part) -> _Part:
    exact: frozenset[str] | None = None
    if (
        body.exact is not None
        and high <= _MAX_REPEAT
        and sum(len(body.exact) ** count for count in range(low, high + 1)) <= _MAX_STRINGS
    ):
        exact = frozenset(
            "".join(parts)
            for count in range(low, high + 1)
            for parts in product(body.exact, repeat=count)
        )
    needs = body.needs if low >= 1 else None
    if exact is not None and not any(_empty(s) for s in exact):
        needs = _best([exact, *([needs] if needs else [])])
    return _Part(exact=exact, needs=needs, starts=_starts(body) if low >= 1 else None)
