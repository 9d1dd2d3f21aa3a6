"""How strongly a lexicon phrase says its concept: specific words fully, vague ones less."""

from __future__ import annotations

STRONG, MID, WEAK = 1.0, 0.7, 0.4
