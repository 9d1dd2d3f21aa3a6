"""Pattern rules for the two escalation triggers: asking for a person, and frustration.

A false "wants a person" costs an operator's time, so that rule asks for a *request frame*
around a word for a person (talk to / put me through to / get me / can a … call me / is a …
available) and drops a frame that a negation governs ("no need for a person", "I don't want
to talk to a human"). Mentions that only report or describe ("the person at the store said",
"my son is a real person", "is it a real person answering?") have no request frame and are
not requests.

Frustration is a sum of independent cues: anger words, asking again ("third time", "how many
times"), complaints of double charging, complaints about the bot, shouting (capitals) and
repeated exclamation marks; and, with a task's history, the same question asked again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.language.text import STOPWORDS, normalise, stem, words
from routing.language import Turn

_DET = r"(?:(?:a|an|the|some|one of your|your|a real|an actual|a live) )?"
_STRONG = (
    r"(?:(?:real|actual|live|proper|human) )?(?:(?:customer )?(?:service|support|care) )?"
    r"(?:human beings?|humans?|persons?|real people|representatives?|reps?|operators?|"
    r"supervisors?|managers?|staff members?|members? of (?:staff|your team|the team)|"
    r"employees?|advis[eo]rs?|human agents?|live agents?|real agents?)"
)
_ANY = (
    rf"(?:{_STRONG}|someone|somebody|anyone|anybody|agents?|people|"
    r"(?:your |the )?(?:support |customer service |service )?team)"
)
_BOT = r"(?:bots?|robots?|machines?|chatbots?|computers?|ai|automated \w+|auto-?replies)"

_REQUESTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        (
            "talk",
            r"\b(?:talk|speak|chat|discuss|explain|deal|handle|sort|have a word)\w*"
            rf"(?: \w+){{0,4}}? (?:to|with|by) {_DET}{_ANY}\b",
        ),
        (
            "transfer",
            r"\b(?:put|transfer|connect|pass|forward|escalate|hand|switch)\w*"
            r"(?: me| us| this| it| my \w+)?(?: through| over| on| across)? (?:to|with) "
            rf"{_DET}{_ANY}\b",
        ),
        ("escalate", r"\bescalat\w*\b"),
        (
            "ask",
            r"\b(?:want|need|like|prefer|get|give|find|request|demand|require|bring)\w*"
            rf"(?: me| us)?(?: to (?:have|get))? {_DET}{_STRONG}\b",
        ),
        (
            "ask",
            rf"\b(?:is|are) (?:there )?{_DET}{_ANY} (?:available|around|on duty|"
            r"(?:i|we) (?:can|could)|who (?:can|could)|that (?:can|could)|to (?:talk|speak|chat))",
        ),
        (
            "callback",
            rf"{_DET}{_ANY} (?:to )?(?:call|ring|phone|contact|get back to|reach out to) "
            r"(?:me|us)\b",
        ),
        (
            "callback",
            rf"\b(?:can|could|please|want|need|would|get|have|let) {_DET}{_STRONG} "
            r"(?:to )?(?:look at|look into|review|handle|take over|deal with|check|call)\b",
        ),
        (
            "not a bot",
            rf"\b(?:not|no more|enough with|enough of|instead of|rather than) "
            rf"(?:the |a |an |this |your |talking to (?:a |the )?)?{_BOT}\b",
        ),
        (
            "person",
            r"(?<!is )(?<!is a )(?<!is an )(?<!it a )(?<!this a )(?<!you a )(?<!re a )"
            r"\b(?:real|actual|live|proper) (?:human(?: being)?|person|agent|people)\b"
            r"|^(?:a |an )?(?:human|operator|representative|person|agent)(?: please| now)\b"
            r"|\bhuman (?:please|now)\b",
        ),
    )
)

_NEGATION = re.compile(
    r"\b(?:no need|not necessary|dont|do not|doesnt|does not|didnt|never|without|rather not|"
    r"no longer|not|nor|no|never mind|wont|will not|shouldnt)\b(?:\W+\w+){0,5}\W*$"
)
_CLAUSE = re.compile(r"[.!?;,:]+|\b(?:but|so|because|although|though)\b")


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired, with the words that made it fire."""

    rule: str
    words: str


def _clauses(text: str) -> list[str]:
    flat = normalise(text).replace("'", "")
    return [c.strip() for c in _CLAUSE.split(flat) if c.strip()]


def human_request(text: str) -> tuple[list[Finding], list[Finding]]:
    """Requests for a person in `text`, and mentions a negation turned down (for `why`)."""
    found: list[Finding] = []
    declined: list[Finding] = []
    for clause in _clauses(text):
        for name, pattern in _REQUESTS:
            for match in pattern.finditer(clause):
                finding = Finding(name, match.group(0).strip())
                if _NEGATION.search(clause[: match.start()]):
                    declined.append(finding)
                else:
                    found.append(finding)
    return found, declined


_ANGER = re.compile(
    r"\b(?:ridiculous|useless|unacceptable|outrageous|disgrace\w*|terrible|awful|worst|"
    r"pathetic|furious|angry|annoyed|annoying|livid|fuming|infuriat\w*|frustrat\w*|"
    r"disappoint\w*|appalling|shocking|horrible|horrendous|incompetent|rubbish|garbage|"
    r"hopeless|nightmare|scam|shambles|absurd|unbelievable|fed up|sick of|sick and tired|"
    r"tired of|had enough|enough is enough|enough with|enough of|wtf|for gods sake|"
    r"waste of (?:my )?(?:time|money)|not good enough|(?:is a|what a|beyond a|a total) joke|"
    r"joke of a|not happy|unhappy|disgusted|pissed|damn|bloody|sort it out|get your act together)\b"
)
_CALM = re.compile(r"\b(?:not|no|never|isnt|wasnt|arent|im not|not at all|not too)\W+(?:\w+\W+)?$")
_FRUSTRATION_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        (
            "asking again",
            r"\b(?:second|third|fourth|fifth|sixth|2nd|3rd|4th|5th|\d+th|umpteenth|nth) time\b"
            r"|\bhow many (?:more )?times\b|\bkeep (?:asking|telling|calling|writing|repeating)\b"
            r"|\balready (?:asked|told|explained|said|written|called)\b|\byet again\b"
            r"|\bover and over again\b|\bagain and again\b"
            r"|\b(?:asked|told|called|written|wrote|emailed|contacted|rang|chased|explained)"
            r"(?: you| this| about (?:this|it|\w+ \w+))? (?:twice|three|four|five|six|several|"
            r"many|multiple|\d+|so many|countless) ?(?:times)?\b",
        ),
        (
            "still waiting",
            r"\bstill (?:waiting|no|nothing|missing|havent|hasnt|not (?:received|here|arrived|"
            r"fixed|sorted|resolved|refunded))\b|\bfor (?:ages|hours|weeks|months)\b",
        ),
        (
            "nobody answers",
            r"\b(?:nobody|no one|noone)(?: \w+){0,2} (?:answers|replies|responds|"
            r"tells|helps|can tell|gets back|cares|listens|calls back|bothers)\b",
        ),
        (
            "charged twice",
            r"\b(?:charged|billed|debited)(?: me)? (?:twice|double|two times|three times)\b"
            r"|\bdouble[- ]?(?:charg|bill)\w*|\bovercharg\w*",
        ),
        (
            "complains about the bot",
            rf"\b{_BOT} (?:keeps|doesnt|does not|never|cant|cannot|wont|isnt|is not)"
            r"(?: \w+)? (?:understand|misunderstand|listen|help|get it)\w*"
            r"|\bcanned (?:answers|responses|replies)\b|\bstop giving me\b",
        ),
    )
)
_ACRONYM_TEXT = """TV LED GDPR VAT OK UK US USA EU ID PIN HDMI SMS USB AI FAQ PDF ETA DNS URL
SSID PC IOS APP 2FA ASAP CEO"""
_ACRONYMS = frozenset(_ACRONYM_TEXT.split())
_CAPS_WORD = re.compile(r"\b[A-Z][A-Z']{3,}\b")


def frustration(text: str, history: Sequence[Turn] = ()) -> list[Finding]:
    """The frustration cues in `text` (with the task's `history`), each named."""
    flat = normalise(text).replace("'", "")
    found: list[Finding] = []
    for match in _ANGER.finditer(flat):
        if not _CALM.search(flat[: match.start()]):
            found.append(Finding("anger", match.group(0)))
    for name, pattern in _FRUSTRATION_RULES:
        found.extend(Finding(name, m.group(0)) for m in pattern.finditer(flat))
    shouted = [w for w in _CAPS_WORD.findall(text) if w.replace("'", "") not in _ACRONYMS]
    if shouted:
        found.append(Finding("shouting", " ".join(shouted[:4])))
    marks = re.search(r"!{2,}|\?+!+|!+\?+", text)
    if marks:
        found.append(Finding("exclamation", marks.group(0)))
    repeated = _repeated_question(text, history)
    if repeated:
        found.append(Finding("asked before", repeated))
    return found


def _content(text: str) -> set[str]:
    return {stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 2}


def _repeated_question(text: str, history: Sequence[Turn]) -> str | None:
    """The earlier turn (by the same side) that `text` repeats, if any."""
    mine = _content(text)
    if len(mine) < 2:
        return None
    for turn in history:
        if turn.side not in ("initiator", ""):
            continue
        theirs = _content(turn.text)
        if theirs and len(mine & theirs) / len(mine | theirs) >= 0.6:
            return turn.text[:80]
    return None
