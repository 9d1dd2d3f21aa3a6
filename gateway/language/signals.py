"""Pattern rules for asking for a person (the frustration cues live in `frustration`).

A false "wants a person" costs an operator's time, so the rule asks for a *request frame*
around a word for a person (talk to / put me through to / get me / can a … call me / is a …
available / get someone who can …) and drops a frame that a negation governs ("no need for a
person", "I don't want to talk to a human"). Mentions that only report or describe ("the
person at the store said", "I talked to someone yesterday", "is it a real person answering?")
have no request frame and are not requests. People are named by role as well as by word:
technicians, specialists, salespeople, claim handlers, "someone senior", "a member of your
staff", "somebody from your billing team".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.language.literals import Gate, Prefilter
from gateway.language.text import normalise

_DET = (
    r"(?:(?:a|an|the|some|one of (?:your|the|our)(?: \w+)?|your|a real|an actual|a live|"
    r"a proper|someone from your|somebody from your|someone from the|somebody from the) )?"
)
_ROLE = (
    r"(?:(?:support |technical |tech |sales |account |claims? |case |billing |senior |"
    r"qualified |specialist )?(?:technicians?|specialists?|experts?|handlers?|consultants?|"
    r"account managers?|advis[eo]rs?|salespersons?|salespeople|sales (?:team|reps?|people|"
    r"person|advis[eo]rs?)|case workers?|caseworkers?))"
)
_STRONG = (
    r"(?:(?:real|actual|live|proper|human) )?(?:(?:customer )?(?:service|support|care) )?"
    r"(?:human beings?|humans?|persons?|real people|representatives?|reps?|operators?|"
    r"(?:duty |practice |store |shift |branch |general |floor )?(?:supervisors?|managers?)|"
    r"staff members?|members? of (?:(?:the|your|our) )?(?:\w+ )?(?:staff|team|department)|"
    r"employees?|human agents?|live agents?|real agents?|engineers?|"
    rf"{_ROLE}|(?:someone|somebody) (?:senior|in charge|more senior|qualified|technical))"
)
_SOMEONE = (
    r"(?:someone|somebody|anyone|anybody)(?: (?:senior|qualified|in charge|real|technical|"
    r"from (?:your |the |our )?(?:\w+ ){0,2}?\w+|"
    r"in (?:sales|billing|support|accounts|claims|charge|your \w+ team)|"
    r"at (?:reception|the (?:front )?desk|the (?:branch|store|shop|office))))?"
)
_ANY = (
    rf"(?:{_STRONG}|{_SOMEONE}|agents?|people|"
    r"(?:your |the )?(?:support |customer service |service |\w+ )?team)"
)
BOT = r"(?:bots?|robots?|machines?|chatbots?|computers?|ai|automated \w+|auto-?replies)"
_MODAL = (
    r"(?:(?:to|could|can|would|will|should|must|please|needs? to|has to|to please|"
    r"(?:to |could |would |will |can )?(?:possibly |please )?be able to|possibly) )?"
)
_CONTACT = (
    r"(?:call|ring|phone|telephone|contact|get back to|reach out to|get in touch(?: with)?|"
    r"give (?:me|us) a (?:call|ring|bell|buzz|phone))"
)
_ASSIST = (
    r"(?:help (?:me|us|with|out)|assist|advise|look at|look into|review|handle|take over|"
    r"deal with|check|sort (?:this|it|that) out|sort out|(?:talk|walk|take) (?:me|us) through|"
    r"go through (?:this|it|that|\w+ \w+) with (?:me|us)|explain)"
)
_PERSONAL = (
    r"(?:(?:a|an|one of your|one of the|a real|an actual|a live|a proper) )"
    r"(?:(?:real|actual|live|proper|human) )?(?:human beings?|humans?|persons?|"
    r"(?:\w+ )?(?:advis[eo]rs?|engineers?|technicians?|specialists?|experts?|staff|"
    r"representatives?|agents?|people)|members? of (?:(?:the|your|our) )?(?:\w+ )?"
    r"(?:staff|team|department))"
)
"""A person named plainly (with an article), who a request can ask to help rather than call."""

_REQUESTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        (
            "talk",
            r"\b(?:talk|speak|chat|discuss|explain|deal|handle|sort|have a word)(?:s|ing)?\b"
            rf"(?: \w+){{0,7}}? (?:to|with|by) {_DET}(?:{_ANY}|engineers?)\b",
        ),
        (
            "transfer",
            r"\b(?:put|transfer|connect|pass|forward|escalate|hand|switch)\w*"
            r"(?: me| us| this| it| my \w+)?(?: through| over| on| across)? (?:to|with) "
            rf"{_DET}(?:{_ANY}|engineers?)\b",
        ),
        ("escalate", r"\bescalat\w*\b"),
        (
            "ask",
            r"\b(?:want|need|like|prefer|get|give|find|request|demand|require|bring|send)\w*"
            rf"(?: me| us)?(?: to (?:have|get))? {_DET}{_STRONG}\b"
            r"(?! (?:details|number|numbers|name|names|email|address|contact))",
        ),
        (
            "ask",
            r"\b(?:get|give|find|bring|send) (?:me|us) (?:someone|somebody|a person|a human) "
            r"(?:who|that) (?:can|could|will|knows|actually)\b",
        ),
        (
            "ask",
            rf"\b(?:is|are) (?:there )?{_DET}{_ANY}(?: there| here| around| else)? "
            r"(?:available|around|on duty|(?:i|we) (?:can|could)|who (?:can|could)|"
            r"that (?:can|could)|to (?:talk|speak|chat))",
        ),
        (
            "callback",
            r"(?<!\bmy )(?<!\bour )(?<!\bhis )(?<!\bher )(?<!\btheir )\b"
            rf"{_DET}{_ANY} {_MODAL}{_CONTACT}(?: back)?(?: (?:me|us)\b|$|\W)",
        ),
        (
            "callback",
            rf"\b(?:can|could|please|want|need|would|get|have|let) {_DET}{_STRONG} "
            r"(?:to )?(?:look at|look into|review|handle|take over|deal with|check|call)\b",
        ),
        (
            "callback",
            r"\b(?:can i|could i|can we|could we|id like|i would like|i want|i need|please|"
            r"arrange|request|book|prefer|rather have)(?: to (?:get|have|book|request|arrange))?"
            r" (?:a |an )?(?:call ?back|phone call|call)\b"
            r"|\b(?:please|can you|could you|would you) (?:call|ring|phone|telephone) (?:me|us)\b"
            r"|\b(?:jump|hop|get) on a (?:quick )?(?:call|phone call)\b",
        ),
        (
            "callback",
            rf"{_PERSONAL} {_MODAL}(?:please )?{_ASSIST}\b",
        ),
        (
            "callback",
            rf"\b{_SOMEONE} {_MODAL}(?:please )?(?:{_ASSIST}|go through \w+)"
            r"(?: \w+){0,8}? (?:on|over) the (?:phone|telephone)\b",
        ),
        (
            "on the line",
            r"\b(?:put|get|have|bring)\w* "
            rf"{_DET}(?:{_ANY}|\w+ people|\w+ staff) on (?:the )?(?:line|phone|call|blower)\b",
        ),
        (
            "rather a person",
            r"\b(?:rather|prefer(?:ably|red|s)?|sooner)\b(?! not)(?: (?!than\b)\w+){0,8}? "
            rf"(?:with|by|to|through|from|via) {_DET}{_STRONG}\b",
        ),
        (
            "not a bot",
            rf"\b(?:not|no more|enough with|enough of|instead of|rather than) "
            rf"(?:the |a |an |this |your |talking to (?:a |the )?)?{BOT}\b",
        ),
        (
            "person",
            r"(?<!is )(?<!is a )(?<!is an )(?<!it a )(?<!this a )(?<!you a )(?<!re a )"
            r"\b(?:real|actual|live|proper) (?:human(?: being)?|person|agent|people)\b"
            r"|^(?:a |an )?(?:human|operator|representative|person|agent)(?: please| now)\b"
            r"|\bhuman (?:please|now)\b|\b(?:someone|somebody) real\b"
            r"|^(?:just |please )?(?:a |an )?(?:real |actual |live |proper )?"
            r"(?:human(?: being)?|person|operator|representative|agent|human agent|"
            r"manager|supervisor)(?: please| now| asap)?$",
        ),
    )
)

_NEGATION = re.compile(
    r"\b(?:no need|not necessary|dont|do not|doesnt|does not|didnt|never|without|rather not|"
    r"no longer|not|nor|no|never mind|wont|will not|shouldnt|than)\b(?:\W+\w+){0,5}\W*$"
)
_ANY_REQUEST = re.compile("|".join(f"(?:{pattern.pattern})" for _, pattern in _REQUESTS))
MESSAGE_WORDS = Gate()
"""The gate of the prefilters that screen a message's normalised text (here and in
`frustration`): one search tells that none of them may match."""
_REQUEST_WORDS = Prefilter(_ANY_REQUEST, gate=MESSAGE_WORDS)
_CLAUSE_WORDS = Prefilter(_ANY_REQUEST)
"""The same filter for one clause at a time (not gated: the gate is for whole messages)."""
_EACH_REQUEST = tuple((name, pattern, Prefilter(pattern)) for name, pattern in _REQUESTS)
"""Each request rule with its own filter: a clause with words for a person usually fits one
or two of the rules, and a filter costs a fraction of the rule's search (and of
`_ANY_REQUEST`'s, which tries every rule at every position)."""
_CLAUSE = re.compile(r"[.!?;,:]+|\b(?:but|so|because|although|though)\b")


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired, with the words that made it fire."""

    rule: str
    words: str


def clauses(text: str) -> list[str]:
    """The clauses of `text`, normalised, apostrophes dropped, split at punctuation and `but`."""
    flat = normalise(text).replace("'", "")
    return [c.strip() for c in _CLAUSE.split(flat) if c.strip()]


def human_request(text: str) -> tuple[list[Finding], list[Finding]]:
    """Requests for a person in `text`, and mentions a negation turned down (for `why`)."""
    found: list[Finding] = []
    declined: list[Finding] = []
    if not _REQUEST_WORDS.may_match(normalise(text).replace("'", "")):
        return found, declined  # none of the words a request is made of: the usual case
    for clause in clauses(text):
        if not _CLAUSE_WORDS.may_match(clause):  # most clauses ask for no one
            continue
        for name, pattern, words in _EACH_REQUEST:
            if not words.may_match(clause):
                continue
            for match in pattern.finditer(clause):
                finding = Finding(name, match.group(0).strip())
                if _NEGATION.search(clause[: match.start()]):
                    declined.append(finding)
                else:
                    found.append(finding)
    return found, declined
