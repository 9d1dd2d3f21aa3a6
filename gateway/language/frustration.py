"""Frustration: a weighted sum of independent cues, so one faint hint does not flag a message.

Each cue is a family of wordings rather than a list of sentences: anger words (unless negated,
"I'm not angry"), idioms of exasperation ("driving me mad", "last straw"), asking again and
counting contacts ("third time", "I've called four times", "second month in a row"), threats
to leave, complain or go to a regulator, sarcasm (a cheerful opener over bad news, "of course
it does", "brilliant service as always"), complaints about the bot, shouting and repeated
punctuation, and, with a task's history, the same question asked again.

Strong cues weigh 1 and flag a message alone; faint ones weigh 0.5 ("still no reply", a price
rise, a demand for "immediately") and need a second cue, because calm customers use them too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from gateway.language.literals import Prefilter
from gateway.language.signals import BOT, MESSAGE_WORDS, Finding
from gateway.language.text import STOPWORDS, normalise, stem, words
from routing.language import Turn

STRONG, FAINT = 1.0, 0.5
THRESHOLD = 1.0

_ANGER = re.compile(
    r"\b(?:ridiculous|useless|unacceptable|outrageous|disgrace\w*|terrible|awful|worst|"
    r"pathetic|furious|angry|annoyed|annoying|livid|fuming|infuriat\w*|frustrat\w*|"
    r"disappoint\w*|appalling|shocking|horrible|horrendous|incompetent|rubbish|garbage|"
    r"hopeless|nightmare|scam|shambles|absurd|unbelievable|fed up|sick of|sick and tired|"
    r"tired of|had enough|enough is enough|enough with|enough of|wtf|for gods sake|"
    r"waste of (?:my |our )?(?:time|money|space)|not good enough|(?:is a|what a|beyond a|a total) "
    r"joke|joke of a|not happy|unhappy|disgusted|pissed|damn|bloody|sort it out|"
    r"get your act together|embarrassing|shameful|laughable|diabolical|atrocious|dreadful|"
    r"not impressed|unimpressed|not acceptable|no excuse|fobbed off|"
    r"driving me (?:mad|crazy|nuts|insane|up the wall|round the bend|to distraction)|"
    r"doing my head in|end of my (?:rope|tether)|wits end|last straw|final straw|"
    r"(?:lost|losing|running out of|run out of) (?:my |all )?patience|pulling my hair out|"
    r"(?:throw|chuck|smash) it (?:out|across|in the bin|against)|"
    r"for the love of (?:god|christ|all)|(?:are|r) you having a laugh|having a laugh|"
    r"how hard (?:is|can) it|(?:cant|cannot|can not) believe|round in circles|getting nowhere|"
    r"(?:do|did) you (?:people |lot |guys )?even (?:check|care|read|listen|test|know)|"
    r"wast(?:ed|ing) (?:my |our |a |another |an )?(?:whole )?(?:day|morning|afternoon|evening|"
    r"hours?|weekend|time|money)|costing (?:me|us) money|more times than i can count|"
    r"lost count|stop (?:telling|asking) me|farce|exasperat\w*|"
    r"(?:losing|lost|lose) (?:my mind|the will to live|my rag|my temper|my cool)|"
    r"(?:tearing|pulling|tear) (?:my|our) hair out|end of my (?:patience|tether|rope)|"
    r"had it up to (?:here|my eyes|the neck)|(?:sick|fed up) (?:up )?to (?:the )?(?:back )?teeth|"
    r"(?:waited|been patient|put up with (?:this|it)|been waiting|chased|been messed \w+)"
    r" (?:for )?long enough|messed (?:me |us )?(?:around|about)|pillar to post|"
    r"done being (?:polite|nice|patient|reasonable|civil)|(?:im|i am|were|we are) (?:so |just |"
    r"completely |totally |absolutely )?done with (?:you|your|this|it all|the lot)|"
    r"(?:the way|how) (?:ive|i have|weve|we have|i was|we were|im being|i am being) "
    r"(?:been )?treated|beyond (?:exasperated|frustrated|angry|annoyed|fed up)|"
    r"(?:is|are|was|were|its|becoming|beyond) (?:a )?(?:complete |total |bad |sick |bloody )?"
    r"joke|nothing (?:has been|was|is being|ever gets|gets|has got) (?:done|sorted|fixed))\b"
)
_DESCRIPTIVE = re.compile(r"^(?:terrible|awful|horrible|dreadful|rubbish|shocking|appalling)$")
"""Anger words that also describe a thing calmly ("the sound is terrible at low volume")."""
_ABOUT_US = re.compile(
    r"\b(?:you|your|youre|this|that|it|its|service|support|staff|company|experience)\W+"
    r"(?:\w+\W+){0,2}$|^\W*$"
)
_FORMER = re.compile(
    r"\b(?:old|previous|former|last|other) \w+(?: \w+)? (?:was|were|is|are)\W+"
    r"(?:\w+\W+)?$"
)
_QUESTION = re.compile(
    r"\?|\b(?:how (?:do|can|would)|is there|can i|could i|can you|could you|which|"
    r"what (?:would|do|can|is)|would you)\b"
)
_SENTENCE_END = re.compile(r"[.!?;]+")
_CALM = re.compile(r"\b(?:not|no|never|isnt|wasnt|arent|im not|not at all|not too)\W+(?:\w+\W+)?$")

_ORDINAL = r"(?:second|third|fourth|fifth|sixth|seventh|2nd|3rd|4th|5th|\d+th|umpteenth|nth)"
_COUNT = r"(?:two|three|four|five|six|seven|eight|nine|ten|\d+|several|multiple|countless|many)"
_CONTACT = (
    r"(?:ticket|call|email|e-mail|complaint|chat|message|letter|attempt|visit|appointment|"
    r"replacement|engineer|one|reminder|request)"
)
_PROVIDER = r"(?:provider|supplier|bank|network|company|insurer|airline|firm|competitor)"

_RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = tuple(
    (name, weight, re.compile(pattern))
    for name, weight, pattern in (
        (
            "asking again",
            STRONG,
            rf"\b{_ORDINAL} time\b|\bhow many (?:more )?times\b"
            r"|\bkeep (?:asking|telling|calling|writing|repeating|chasing)\b"
            r"|\balready (?:asked|told|explained|said|written|called)\b|\byet again\b"
            r"|\bmake (?:me|us) (?:ask|call|chase|write|repeat|explain)\w*(?: \w+)? again\b"
            r"|\bover and over again\b|\bagain and again\b"
            r"|\b(?:asked|told|called|written|wrote|emailed|contacted|rang|chased|explained|"
            r"phoned|messaged|reported|complained)(?: you| this| about (?:this|it|\w+ \w+))? "
            rf"(?:twice|(?:{_COUNT}|so many) ?times)\b"
            rf"|\b(?:i|ive|weve|we|id)\b(?: \w+){{0,6}}? (?:twice|{_COUNT} times)\b"
            rf"|\b{_ORDINAL} (?:\w+ )?(?:in a row|running)\b"
            rf"|\b(?:third|fourth|fifth|sixth|umpteenth|nth) {_CONTACT}s?\b"
            rf"|\bsecond (?:ticket|complaint|replacement|attempt|reminder)\b",
        ),
        (
            "still waiting",
            STRONG,
            r"\bstill (?:waiting|not (?:received|here|arrived|fixed|sorted|resolved|refunded|"
            r"working))\b",
        ),
        (
            "still waiting",
            FAINT,
            r"\bstill (?:no|nothing|missing|havent|hasnt|cant|wont|doesnt|isnt)\b"
            r"|\bfor (?:ages|hours|weeks|months)\b|\bweeks? (?:later|on)\b",
        ),
        (
            "nobody answers",
            STRONG,
            r"\b(?:nobody|no one|noone)(?: \w+){0,2} (?:answers|replies|responds|"
            r"tells|helps|can tell|gets back|got back|has got back|cares|listens|calls back|"
            r"bothers|has (?:ever )?(?:called|replied|answered|responded|bothered))\b"
            r"|\bno (?:updates?|reply|replies|response|answer|word|news|call ?back) "
            r"(?:from (?:anyone|anybody|you)|at all|whatsoever)\b",
        ),
        (
            "charged twice",
            STRONG,
            r"\b(?:charged|billed|debited|taken)(?: me| us| the \w+)? (?:twice|double|two times|"
            r"three times)\b|\bdouble[- ]?(?:charg|bill)\w*|\bovercharg\w*",
        ),
        (
            "complains about the bot",
            STRONG,
            rf"\b{BOT} (?:keeps|doesnt|does not|never|cant|cannot|wont|isnt|is not)"
            r"(?: \w+)? (?:understand|misunderstand|listen|help|get it)\w*"
            r"|\bcanned (?:answers|responses|replies)\b|\bstop giving me\b",
        ),
        (
            "threat",
            STRONG,
            r"\b(?:ombudsman|regulator|ofcom|ofgem|trading standards|small claims|solicitors?|"
            r"lawyers?|legal action|chargeback|watchdog|citizens advice|better business bureau|"
            r"trustpilot|one star|1 star|bad reviews?|reviews? everywhere|social media|"
            r"the press|take (?:my|our) (?:business|custom|money) elsewhere|"
            r"(?:taking|took) (?:my|our) (?:business|custom|money) elsewhere|formal complaint|"
            r"(?:make|file|lodge|raise|making|filing) a complaint|my mp|the papers|newspapers?|"
            r"the media|card issuer|credit card (?:company|provider)|"
            r"(?:taking|take) (?:this|it) (?:up|further)|"
            r"(?:dispute|disputing|reverse|reversing|challenge|challenging) (?:the |this |that )?"
            r"(?:charge|payment|transaction|debit) (?:with|through) (?:my|the) (?:bank|card)|"
            r"(?:raise|raising|report|reporting|escalate|escalating) (?:this|it) (?:with|to) "
            r"(?:the|my) (?:ombudsman|regulator|bank|press|mp|financial))\b"
            r"|\b(?:take|taking|took) (?:my|our) (?:\w+ )?elsewhere\b|\bgo(?:ing)? elsewhere\b"
            r"|\breport(?:ing)? you\b|\bleaving reviews\b"
            r"|\b(?:seriously|really|very) (?:tempted|considering|thinking)\b"
            r"|\btempted to (?:cancel|leave|switch|walk|go)\b"
            r"|\b(?:or|otherwise|else) (?:im|i am|ill|i will|well|we will|were|we are) "
            r"(?:\w+ )?(?:going|off|switching|leaving|cancell?ing|moving|taking|reporting|"
            r"complaining|done|closing|disputing|raising|contacting|writing|posting|escalating)\b"
            r"|\bif\b(?: \w+){0,12} (?:im|ill|i will|i am going to|well|were) (?:\w+ )?"
            r"(?:cancell?ing|cancel|leaving|leave|switching|switch|reporting|complaining|"
            r"going elsewhere|disputing|raising|escalating|closing|taking|going to)\b"
            r"|\b(?:if (?:this|it|that|my \w+|the \w+)(?: \w+)? (?:isnt|is not|hasnt|has not|"
            r"doesnt|does not|arent|wasnt|still)|unless)\b(?: \w+){0,8}? (?:by|before|within) "
            r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|tonight|"
            r"the weekend|end of|close of|next week|this week)\b(?: \w+){0,3}?,? (?:then )?"
            r"(?:im|ill|i will|i am|well|we will|were|i shall|youll|you will)\b",
        ),
        (
            "sarcasm",
            STRONG,
            r"\b(?:colou?r me (?:shocked|surprised|amazed)|what a surprise|surprise surprise|"
            r"just what i (?:needed|wanted)|thanks for nothing|who would have (?:thought|guessed)|"
            r"(?:great|brilliant|fantastic|excellent|wonderful|amazing|superb|stellar|top|lovely)"
            r"(?: \w+){0,2} as (?:always|usual|ever)|love (?:\w+ing )?(?:\w+ ){0,3}with you lot|"
            r"cheers for nothing|thanks a bunch|"
            r"(?:great|brilliant|fantastic|lovely|nice|wonderful|excellent) way to treat|"
            r"(?:cheers|thanks) for the (?:heads up|warning|notice)"
            r"(?= \w+ (?:\w+ )?(?:really|great|brilliant|lovely|fantastic|nice)))\b",
        ),
        (
            "threat",
            FAINT,
            rf"\b(?:to|for) (?:another|a different|a new|a cheaper|a better) {_PROVIDER}\b"
            r"|\bcompetitors?\b|\bport(?:ing)? out\b",
        ),
        (
            "price rise",
            FAINT,
            r"\b(?:prices?|bills?|premiums?|renewal|quote|payments?|costs?|fees?|tariff)"
            r"(?: \w+){0,3} (?:has |have )?(?:gone up|went up|doubled|tripled|increased|risen|"
            r"rose|shot up|jumped)\b|\bprices? up\b|\bloyal (?:customer )?for\b|"
            r"\b(?:ive|i have|weve|we have) been (?:a )?loyal\b|\bloyal customers?\b",
        ),
        (
            "demand",
            FAINT,
            r"\b(?:immediately|right now|asap|today, not|without (?:asking|telling|warning|"
            r"notice|consent|permission|my (?:consent|permission))|without (?:a|any) (?:word|"
            r"warning|notice))\b",
        ),
        (
            "wants someone senior",
            FAINT,
            r"\b(?:manager|supervisor|someone (?:senior|in charge)|somebody (?:senior|in charge)|"
            r"complaints (?:team|department))\b",
        ),
        (
            "same fault again",
            FAINT,
            r"\b(?:exactly |still )?the (?:exact )?same (?:fault|problem|issue|defect|error)\b",
        ),
    )
)
_SENTENCE_RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    (
        "sarcasm",
        STRONG,
        re.compile(r"^(?:of course|naturally|typical|classic)(?: it \w+| you \w+)?$"),
    ),
    ("leaving", STRONG, re.compile(r"\b(?:im|i am) (?:leaving|off|out|done|outta here)$")),
    ("asking again", STRONG, re.compile(r"^(?:and |yet |once )?again$")),
    ("demand", STRONG, re.compile(r"^(?:fix|sort) (?:it|this)(?: out)?(?: now)?$")),
    ("demand", FAINT, re.compile(r"^(?:now|explain (?:that|this|yourselves)|seriously|really)$")),
)
_OPENER = re.compile(
    r"^\W*(?:oh |well |just |so )?(?:great|fantastic|brilliant|wonderful|lovely|marvell?ous|"
    r"superb|awesome|amazing|excellent|perfect|terrific|fab|nice one|cheers)\b(?:\W|$)"
)
_BAD_NEWS = re.compile(
    r"\b(?:again|another(?! (?:question|quick|thing|query|small))|"
    r"dead|down|broken|broke|wrong|stopped|not working|doesnt work|failed|"
    r"crash\w*|outage|late|delayed|useless|nothing|gone|lost|missing|cancelled)\b"
)
_RESOLVED = re.compile(
    r"\b(?:thanks?(?! a lot| a bunch| for nothing| for that| very much for that)|thank you|"
    r"cheers(?! for nothing| for that| \w+$)|sorted|fixed|resolved|solved|works now|working now|"
    r"working again|back (?:on|up)|helpful)\b"
)

_ACRONYM_TEXT = """TV LED GDPR VAT OK UK US USA EU ID PIN HDMI SMS USB AI FAQ PDF ETA DNS URL
SSID PC IOS APP 2FA ASAP CEO IMAP POP3 VOIP SIM APN ISP WAN LAN NAT DSL ADSL VDSL FTTP FTTC ONT
IPTV PAYG EPG PVR DVR HDR UHD CCTV SMTP MMS IBAN SWIFT BACS CHAPS ISA APR SAML SSO SOC DPA API
CISO XSS IMEI PUK BIOS NHS HMRC DVLA MOT AUX ARC WIFI MAC IP 4G 5G 3G LTE UTC GMT BST NFC OTP
CVV AML KYC ATM EMEA APAC HR IT QA CRM ERP SLA KPI OAUTH CSV JSON HTML HTTP HTTPS"""
_ACRONYMS = frozenset(_ACRONYM_TEXT.split())
_CAPS_WORD = re.compile(
    r"(?<![\w*#&/-])[A-Z][A-Z']{3,}(?![\w*#&/-])|\b(?:NOW|WHY|HOW|NOT|YET)\b(?=\W*$|[.!?])"
)
_VOWEL = re.compile(r"[AEIOU]")


def any_of(patterns: Sequence[re.Pattern[str]]) -> re.Pattern[str]:
    """One pattern that matches a string exactly when one of `patterns` does somewhere in
    it (a search tries every alternative at every position): a cheap test that lets a
    message no rule fits skip the rules one by one."""
    return re.compile("|".join(f"(?:{pattern.pattern})" for pattern in patterns))


_ANY_RULE = any_of([pattern for _, _, pattern in _RULES])
_RULE_WORDS = Prefilter(_ANY_RULE, gate=MESSAGE_WORDS)
_ANGER_WORDS = Prefilter(_ANGER, gate=MESSAGE_WORDS)
_ANY_SENTENCE_RULE = any_of([pattern for _, _, pattern in _SENTENCE_RULES])
_SENTENCE_WORDS = Prefilter(_ANY_SENTENCE_RULE, gate=MESSAGE_WORDS)
_CAPS_HINT = re.compile(r"[A-Z][A-Z']{2}")
"""Three capitals in a row: what every match of `_CAPS_WORD` starts with."""


def frustration(text: str, history: Sequence[Turn] = ()) -> list[Finding]:
    """The frustration cues in `text` (with the task's `history`) if they add up, else none."""
    flat = normalise(text).replace("'", "")
    cues: list[tuple[float, Finding]] = []
    for match in _ANGER.finditer(flat) if _ANGER_WORDS.may_match(flat) else ():
        before = _SENTENCE_END.split(flat[: match.start()])[-1]
        if _CALM.search(before):
            continue
        weight = STRONG
        if _DESCRIPTIVE.match(match.group(0)) and not _ABOUT_US.search(before):
            if _FORMER.search(before):
                continue  # "our old lender was terrible": about someone else
            if _QUESTION.search(flat):
                weight = FAINT  # "the sound is terrible at low volume, is there an EQ?"
        cues.append((weight, Finding("anger", match.group(0))))
    if _RULE_WORDS.may_match(flat) and _ANY_RULE.search(flat):  # most messages match none
        for name, weight, pattern in _RULES:
            cues.extend((weight, Finding(name, m.group(0))) for m in pattern.finditer(flat))
    for sentence in _SENTENCE_END.split(flat) if _SENTENCE_WORDS.may_match(flat) else ():
        sentence = sentence.strip(" ,")
        if not _ANY_SENTENCE_RULE.search(sentence):
            continue
        for name, weight, pattern in _SENTENCE_RULES:
            hit = pattern.search(sentence)
            if hit:
                cues.append((weight, Finding(name, hit.group(0))))
    sarcastic = any(finding.rule == "sarcasm" for _, finding in cues)
    if sarcastic and _RESOLVED.search(flat):  # "just what I needed, thanks!" is sincere
        cues = [c for c in cues if c[1].rule != "sarcasm" or "nothing" in c[1].words]
    openers = [m.group(0) for s in _SENTENCE_END.split(flat) if (m := _OPENER.search(s))]
    if openers and _BAD_NEWS.search(flat) and not _RESOLVED.search(flat):
        cues.append((STRONG, Finding("sarcasm", openers[0].strip(" ,.!") + " …")))
    if _CAPS_HINT.search(text):
        shouted = [w for w in _CAPS_WORD.findall(text) if _shouted(w)]
        if shouted:
            cues.append((STRONG, Finding("shouting", " ".join(shouted[:4]))))
    if "!" in text or "??" in text:
        marks = re.search(r"!{2,}|\?+!+|!+\?+", text)
        if marks:
            cues.append((STRONG, Finding("exclamation", marks.group(0))))
        elif "??" in text:
            cues.append((FAINT, Finding("exclamation", "??")))
    repeated = _repeated_question(text, history)
    if repeated:
        cues.append((STRONG, Finding("asked before", repeated)))
    if sum(weight for weight, _ in cues) < THRESHOLD:
        return []
    return [finding for _, finding in sorted(cues, key=lambda c: -c[0])]


def _shouted(word: str) -> bool:
    """A capitalised word that is a word (has a vowel) and not a known acronym."""
    bare = word.replace("'", "")
    return bare not in _ACRONYMS and bool(_VOWEL.search(bare))


@functools.lru_cache(maxsize=4096)
def _content(text: str) -> frozenset[str]:
    """The stems of the text's content words (cached: a task's earlier turns are compared
    again with every new message)."""
    return frozenset(stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 2)


_ASKING = frozenset({"initiator", ""})
_ANSWERING = frozenset({"responder", "operator"})


def _last_answer(turns: Sequence[Turn], start: int = 0, found: int = -1) -> int:
    """Where the other side last answered among `turns[start:]`, else `found`."""
    for index in range(len(turns) - 1, start - 1, -1):
        if turns[index].side in _ANSWERING:
            return index
    return found


class LastAnswers:
    """Where the other side last answered in each recent history, remembered between messages.

    The gateway asks about every new message of a task with the task's history: the same
    `Turn` objects as the time before plus the newest one or, once the escalator's window is
    full, the same minus the second turn plus the newest (see `Escalator.turns`). Finding the
    last answer anew is a pass over up to 200 turns in Python for every message; this keeps
    each history's turns and that index, keyed by its first turn (held, so its id is not
    reused while the entry lives), and reads only what changed. Whether a history is the one
    remembered is checked in full (a tuple comparison, in C: identical turns compare at once,
    equal ones by value), so any other history is read in full, as before.
    """

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._known: dict[int, tuple[tuple[Turn, ...], int]] = {}

    def index(self, history: Sequence[Turn]) -> int:
        """The index of the last responder or operator turn of `history`, or -1."""
        if not history:
            return -1
        turns = tuple(history)
        key = id(turns[0])
        known = self._known.pop(key, None)
        answer = _last_answer(turns) if known is None else _moved_on(known, turns)
        if len(self._known) >= self._size:
            self._known.pop(next(iter(self._known)), None)  # the least recently asked about
        self._known[key] = (turns, answer)
        return answer


def _moved_on(known: tuple[tuple[Turn, ...], int], turns: tuple[Turn, ...]) -> int:
    """The last answer of `turns`, given the `known` turns of the same task and theirs."""
    before, answer = known
    count = len(before)
    if len(turns) >= count and turns[:count] == before:  # grown (or the same)
        return _last_answer(turns, count, answer)
    if count == len(turns) > 2 and turns[0] is before[0] and turns[1:-1] == before[2:]:
        # The window moved on by one: the second turn left, the newest came in.
        if answer > 1:
            answer -= 1
        elif answer == 1:  # the last answer left; only the first turn is older
            answer = 0 if turns[0].side in _ANSWERING else -1
        return _last_answer(turns, count - 1, answer)
    return _last_answer(turns)


_LAST_ANSWERS = LastAnswers()


def _repeated_question(text: str, history: Sequence[Turn]) -> str | None:
    """The earlier initiator turn that `text` repeats after the other side has answered it.

    Asking the same thing again once the brand has replied is a sign of a person going round
    in circles; sending two similar messages before anyone answered is not (it is how agents
    split or resend a request), so a repeat counts only when a reply came in between.
    """
    # The initiator's turns before the other side's latest answer are the answered ones.
    answer = _LAST_ANSWERS.index(history)
    mine = _content(text) if answer > 0 else frozenset()
    if len(mine) < 2:
        return None
    size = len(mine)
    low, high = 0.6 * size, size / 0.6  # a Jaccard of 0.6 needs a similar size
    for turn in history[:answer]:
        if turn.side in _ASKING:
            theirs = _content(turn.text)
            if low <= len(theirs) <= high:
                shared = len(mine & theirs)  # the union's size follows, without building it
                if shared / (size + len(theirs) - shared) >= 0.6:
                    return turn.text[:80]
    return None
