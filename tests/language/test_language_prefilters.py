"""The prefilters of the rule language layer say "no rule matches" only when none does, so
skipping the rules never changes a finding: the one-search union of a rule set, and before it
the literal filters (`gateway.language.literals`)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.language import frustration, signals
from gateway.language.literals import Gate, literals, necessary_words
from gateway.language.literals import Prefilter as _Prefilter
from gateway.language.ranking import _SHIFT
from gateway.language.text import normalise

_WORDS = [
    "again", "third", "time", "human", "person", "agent", "please", "now", "not", "i", "want",
    "to", "speak", "talk", "with", "a", "real", "fix", "it", "great", "thanks", "manager",
    "already", "asked", "twice", "keep", "asking", "same", "problem", "im", "done", "leaving",
    "rather", "than", "bot", "is", "an", "my", "of", "course", "seriously", "!", "?", ",", ".",
]  # fmt: skip

_TEXTS = st.lists(st.sampled_from(_WORDS), max_size=14).map(" ".join)


@settings(max_examples=400)
@given(_TEXTS)
def test_each_prefilter_matches_exactly_when_one_of_its_patterns_does(text: str):
    """For the request, rule and sentence-rule sets, the combined pattern finds a match in a
    text if and only if at least one of the patterns does."""
    sets = [
        (signals._ANY_REQUEST, [pattern for _, pattern in signals._REQUESTS]),
        (frustration._ANY_RULE, [pattern for _, _, pattern in frustration._RULES]),
        (
            frustration._ANY_SENTENCE_RULE,
            [pattern for _, _, pattern in frustration._SENTENCE_RULES],
        ),
    ]
    for combined, patterns in sets:
        assert bool(combined.search(text)) == any(p.search(text) for p in patterns)


# Literal prefilters (`gateway.language.literals`): a pattern can match only where one of its
# literals occurs, so "no literal here" lets the rules skip a search. Checked on the rules
# themselves, over texts made of the words they are built on, and on every labelled message.

Prefilter = functools.cache(_Prefilter)  # each pattern's literals are read once


_RULE_PATTERNS = [
    ("request", signals._ANY_REQUEST),
    ("rule", frustration._ANY_RULE),
    ("anger", frustration._ANGER),
    ("sentence", frustration._ANY_SENTENCE_RULE),
    *((f"request {name}", pattern) for name, pattern in signals._REQUESTS),
    *((f"frustration {name}", pattern) for name, _, pattern in frustration._RULES),
]


def _vocabulary() -> list[str]:
    """The words the rules' literals are made of, and some ordinary ones between them."""
    words = set(_WORDS)
    for _, pattern in _RULE_PATTERNS:
        for literal in Prefilter(pattern).strings or ():
            words.update(literal.replace("\x00", " ").split())
    return sorted(words)


_RULE_TEXTS = st.lists(st.sampled_from(_vocabulary()), min_size=1, max_size=12).map(" ".join)


@settings(max_examples=600, deadline=None)
@given(_RULE_TEXTS, st.sampled_from([p for _, p in _RULE_PATTERNS]))
def test_a_rule_matches_only_where_its_prefilter_says_it_may(text: str, pattern: re.Pattern[str]):
    assert Prefilter(pattern).strings, "every rule is built on fixed words"
    if pattern.search(text):
        assert Prefilter(pattern).may_match(text)


@functools.cache
def _labelled_texts() -> list[str]:
    here = Path(__file__).parent
    files = [*here.glob("data/*.jsonl"), *here.glob("data/blind/*.jsonl")]
    files += list((here.parents[2].parent / "shared" / "language").glob("*.jsonl"))
    texts = []
    for path in files:
        for line in path.read_text().splitlines():
            if line.strip():
                texts.append(normalise(json.loads(line)["text"]).replace("'", ""))
    return texts


@pytest.mark.parametrize(("name", "pattern"), _RULE_PATTERNS, ids=[n for n, _ in _RULE_PATTERNS])
def test_no_labelled_message_matched_by_a_rule_is_filtered_out(name: str, pattern: re.Pattern[str]):
    texts = _labelled_texts()
    assert len(texts) > 400
    prefilter = Prefilter(pattern)
    matched = [t for t in texts if pattern.search(t)]
    assert all(prefilter.may_match(t) for t in matched), name
    # Requests are tested clause by clause: a clause's match is one in the whole text too.
    for text in texts:
        for clause in signals.clauses(text):
            if pattern.search(clause):
                assert prefilter.may_match(text), (name, clause)


def test_the_filters_pass_few_ordinary_messages():
    """The point of a filter: most labelled messages need no search by the big patterns."""
    texts = _labelled_texts()
    for pattern in (signals._ANY_REQUEST, frustration._ANGER, frustration._ANY_RULE):
        passed = sum(Prefilter(pattern).may_match(t) for t in texts)
        assert passed < 0.6 * len(texts), pattern.pattern[:40]


def test_literals_keep_word_boundaries_and_multiply_out_short_alternatives():
    bot = Prefilter(re.compile(r"\b(?:not|no more) (?:the |a )?(?:bots?|ai|automated \w+)\b"))
    assert bot.may_match("i said not the ai")
    assert not bot.may_match("it failed again, not for the first time")  # "ai" inside words
    colour = Prefilter(re.compile(r"\bcolou?r me (?:shocked|surprised)\b"))
    assert colour.may_match("well color me surprised")
    assert not colour.may_match("colour me pink")


def test_a_boundary_before_alternatives_reaches_each_of_them():
    """`\\b(?:ridiculous|disgrace\\w*)` needs each word from a word's start, though one
    alternative goes on with `\\w*` and Python's parser takes the boundary out of them."""
    angry = re.compile(r"\b(?:ridiculous|disgrace\w*)\b")
    assert literals(angry) == frozenset({"\x00ridiculous", "\x00disgrace"})
    assert not Prefilter(angry).may_match("an undisgraced and unridiculous reply")
    assert Prefilter(angry).may_match("a disgraceful reply")
    bot = re.compile(r"\b(?:bots?|automated \w+) (?:keeps|never)\b")
    assert "\x00automated " in (literals(bot) or ())
    assert not Prefilter(bot).may_match("the semiautomated line keeps ringing")


def test_every_match_holds_one_of_the_necessary_words():
    """The plain words that let routing skip its search for a change of topic."""
    words = necessary_words(_SHIFT)
    assert words and "other" in words and "another" not in words  # "another" holds "other"
    texts = [*_labelled_texts(), "on another note, my bill", "a separate issue", "unrelated"]
    for text in texts:
        if _SHIFT.search(text):
            assert any(word in text for word in words), text
    assert necessary_words(re.compile(r"\w+ and \w+")) == ("and",)
    assert necessary_words(re.compile(r"(?:human)?\w+")) is None


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"(?i)human", "HUMAN please"),  # case folded: the literal "human" would miss it
        (r"(?:human)?\w+", "anything"),  # nothing is required
        (r"(\w+) and \1", "this and this"),  # a back reference
        (r"(?a:\bfoo\b)", "\u00e9foo"),  # a group's own ASCII flag changes what \b means
        ("a\x00b", "a\x00b"),  # a NUL, which the literals use for word boundaries
    ],
)
def test_what_the_reader_does_not_know_lets_everything_through(pattern: str, text: str):
    compiled = re.compile(pattern)
    assert compiled.search(text)
    assert literals(compiled) is None
    assert Prefilter(compiled).may_match(text)


def test_long_repeats_are_not_multiplied_out():
    """`x{0,65535}yz` needs "yz"; multiplying the repeat out would take gigabytes."""
    compiled = re.compile(r"x{0,65535}yz")
    assert literals(compiled) == frozenset({"yz"})
    assert Prefilter(compiled).may_match("yz") and not Prefilter(compiled).may_match("xxy")


# The gate (`gateway.language.literals.Gate`): one search for the literals of several
# prefilters, asked before each of them; it must never turn a "may match" into a "no".


@settings(max_examples=600, deadline=None)
@given(_RULE_TEXTS)
def test_a_gated_prefilter_answers_as_it_does_alone(text: str):
    """The rules' gated prefilters say what ungated ones over the same patterns say."""
    gated = [
        signals._REQUEST_WORDS,
        frustration._ANGER_WORDS,
        frustration._RULE_WORDS,
        frustration._SENTENCE_WORDS,
    ]
    for prefilter in gated:
        alone = Prefilter(prefilter._pattern)
        assert prefilter.may_match(text) == alone.may_match(text)


def test_the_gate_says_no_only_when_none_of_its_prefilters_may_match():
    """On every labelled message the gate says no exactly when all four prefilters would."""
    alone = [
        Prefilter(pattern)
        for pattern in (
            signals._ANY_REQUEST,
            frustration._ANGER,
            frustration._ANY_RULE,
            frustration._ANY_SENTENCE_RULE,
        )
    ]
    texts = _labelled_texts()
    for text in texts:
        assert signals.MESSAGE_WORDS.may_match(text) == any(p.may_match(text) for p in alone)
    assert sum(signals.MESSAGE_WORDS.may_match(t) for t in texts) < len(texts)


def test_a_gate_remembers_only_the_last_text_and_stands_aside_when_it_cannot_exclude():
    """The remembered answer is for the same text only; a prefilter that cannot exclude
    anything (no literals) makes its gate say "may match" for everything."""
    gate = Gate()
    human = _Prefilter(re.compile(r"\bhuman\b"), gate=gate)
    angry = _Prefilter(re.compile(r"\bangry\b"), gate=gate)
    assert not gate.may_match("all is well") and not human.may_match("all is well")
    assert gate.may_match("i am angry") and angry.may_match("i am angry")
    assert not human.may_match("i am angry")  # the gate passed; the prefilter itself says no
    assert not gate.may_match("all is well")
    _Prefilter(re.compile(r"\w+"), gate=gate)  # nothing required: the gate cannot exclude
    assert gate.may_match("all is well") and not human.may_match("all is well")
