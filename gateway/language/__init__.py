"""Adapters of routing's `Language` port: `rules` (offline, the default) and `openai`.

The pure text pieces (tokeniser, lexicon, ranking, signal patterns, summaries) live in small
modules here so the rule-based adapter and directory search share one implementation.
"""
