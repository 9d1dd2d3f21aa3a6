"""The one-search prefilters of the rule language layer say "no rule matches" only when none
does, so skipping the rules one by one never changes a finding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.language import frustration, signals

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
