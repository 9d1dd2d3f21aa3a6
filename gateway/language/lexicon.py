"""A concept lexicon for customer-service English: many ways of saying one thing.

An agent card says "shipping and delivery"; a customer says "where's my parcel". Both sides
are mapped onto the same concepts, so the ranking compares meanings rather than spellings.
Entries are written as people type them and stemmed when the lexicon is compiled; a phrase of
several words is matched before its parts, and its words are then consumed. Each entry has a
weight: specific words (`parcel`) count fully, vague ones (`reset`, `fail`) less, and a few
phrases map to no concept at all to stop a misleading part matching (`on hold` is not luggage).

This module holds the concepts most brands share (orders, delivery, billing, refunds,
returns, warranty, accounts, sign-in, subscriptions, privacy, marketing e-mail, technical
troubleshooting, set-up, connectivity, status lights, firmware, sound); the domain modules add
travel, telecom and energy, banking and insurance, and software. A narrow concept may name a
broader *parent* (`card` -> `billing`): a hit on it also counts, at half weight, for the
parent, so "my card was declined" still reaches an agent whose card only says "payments".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.language.lexicon_finance import FINANCE
from gateway.language.lexicon_software import SOFTWARE
from gateway.language.lexicon_telecom import TELECOM
from gateway.language.lexicon_travel import TRAVEL
from gateway.language.text import Token, stem, words
from gateway.language.weights import MID as _MID
from gateway.language.weights import STRONG as _STRONG
from gateway.language.weights import WEAK as _WEAK

COMMON: dict[str, dict[float, str]] = {
    "order": {
        _STRONG: "order|orders|ordered|purchase|purchased|bought",
        _WEAK: "buy|item|product",
    },
    "delivery": {
        _STRONG: "delivery|deliver|delivered|shipping|ship|shipped|shipment|parcel|package|"
        "courier|tracking|track|tracking number|dispatch|dispatched|postage|in transit|"
        "postman|arrive|arrived|arrival|not arrived|hasn't arrived|didn't arrive|"
        "never arrived|never came|never turned up|send it|sent it",
        _MID: "late|delay|delayed|received|receive|neighbour|doorstep|post|missing|"
        "lost|box|where is my|where's my|wheres my",
    },
    "returns": {
        _STRONG: "return|returns|returned|returning|send back|send it back|sending back|"
        "sent back|return label|didnt come with|didn't come with|came without|missing from the box|"
        "not included|exchange|swap|wrong colour|wrong color|wrong size|"
        "wrong item|wrong model|wrong product|don't fit|doesn't fit|dont fit|doesnt fit|"
        "return policy",
        _MID: "scratched|dented|crushed|damaged|faulty|come with|comes with|came with",
    },
    "refund": {
        _STRONG: "refund|refunds|refunded|money back|reimburse|reimbursement|repay|"
        "compensation|credit back|paid back|get my money",
        _MID: "money",
    },
    "billing": {
        _STRONG: "invoice|invoices|bill|billing|billed|bills|receipt|receipts|payment|payments|"
        "pay|paid|paying|vat|vat number|overcharged|fare|fares|double charged|charged twice|"
        "line rental|one-off charge|payday|pay my bill",
        _MID: "charge|charged|charges|charging|cost|costs|fee|fees|expensive|"
        "expenses|transaction|transactions|taken",
    },
    "warranty": {
        _STRONG: "warranty|guarantee|guaranteed|replacement|replace|defective|covered",
        _MID: "faulty|broke|broken",
    },
    "account": {
        _STRONG: "account|accounts|profile|username|user name|my details|account details|"
        "account settings|phone number|email address|e-mail address|personal details|"
        "sort code|account number|account holder|account holders|joint account|current account|"
        "open an account|opening an account|new account",
        _MID: "address|name",
        _WEAK: "settings|setting|on my account|in my account|to my account|"
        "into my account|on the account|in the account|with my account|"
        "of my account",
    },
    "signin": {
        _STRONG: "sign in|signin|sign-in|log in|login|logon|log on|logging in|signing in|"
        "password|passwords|passcode|credentials|locked out|two factor|two-factor|2fa|"
        "verification code|authentication|reset link|reset email|forgot my password",
        _MID: "sign into|log into|disabled|locked|cant get in|can't get in|cannot get in|"
        "get into my",
    },
    "subscription": {
        _STRONG: "subscription|subscriptions|subscribe|subscribed|premium|membership|"
        "renew|renewal|renewed|downgrade|trial|plan|monthly plan|plus plan",
        _MID: "pause",
    },
    "privacy": {
        _STRONG: "privacy|private|personal data|my data|data|gdpr|delete|deletion|erase|"
        "advertisers|advertising|share my|shared|third parties|information you hold|"
        "data you hold|listening history|delete my account",
        _MID: "history|information|cookies",
    },
    "marketing": {
        _STRONG: "newsletter|newsletters|marketing|promotion|promotions|promotional|promo|"
        "unsubscribe|spam|mailing list|email preferences|emails|e-mails|emailing|"
        "stop emailing|stop sending",
        _MID: "email|e-mail|emailed|preferences",
    },
    "troubleshooting": {
        _STRONG: "troubleshooting|troubleshoot|not working|doesn't work|doesnt work|"
        "won't work|wont work|stopped working|won't play|wont play|won't turn on|"
        "wont turn on|doesn't turn on|doesnt turn on|not turn on|no power|reboot|"
        "reboots|restart|restarts|keeps restarting|crash|crashes|freeze|freezes|frozen|"
        "bricked|dead|factory reset|factory settings|malfunction|glitch|powers off|"
        "switches itself on|switches itself off|turns itself on|turns itself off|"
        "on its own|by itself|randomly|keeps cutting out|forgets|causing it",
        _MID: "stuck|error|fault|fails|failing|failed|fail|turn on|turns off",
        _WEAK: "reset|problem|issue|broken|broke",
    },
    "setup": {
        _STRONG: "setup|set up|setting up|configure|configuration|"
        "hdmi|optical|cable|stereo pair|surround|wall mount|mount|group speakers|"
        "device setup",
        _MID: "app|second speaker|tv|television|connect to my tv",
    },
    "connectivity": {
        _STRONG: "wifi|wi-fi|wireless|network|bluetooth|pair|pairing|paired|"
        "connectivity|connection|disconnect|disconnects|disconnecting|disconnected|"
        "internet|offline|signal|airplay|chromecast|conect|connect|connecting",
        _MID: "drops|dropping|dropped|drop|stream|streaming|spotify|find my speaker",
    },
    "lights": {
        _STRONG: "light|lights|led|status light|status lights|blinking|blink|blinks|"
        "flashing|flash|flashes|glowing|pulsing",
        _MID: "orange|amber|red|green|white|blue|solid",
    },
    "firmware": {
        _STRONG: "firmware|firmware update|software update|software version|update|"
        "updates|updated|updating|upgrade firmware|latest version|newer version",
        _MID: "software|version",
    },
    "sound": {
        _STRONG: "sound|sounds|audio|bass|treble|volume|distorted|distortion|crackling|"
        "crackle|buzzing|buzz|hum|humming|muffled|noise|noisy|static|echo|out of sync|"
        "lip sync|no sound|sound quality|hear|quiet|loud|tinny",
        _MID: "music|play|playing|voice|dialogue|tunes|songs|song|whine|fuzzy",
    },
    "device": {
        _WEAK: "speaker|speakers|soundbar|soundbars|subwoofer|sub woofer|headphones|remote|"
        "device|devices",
    },
    "": {
        _STRONG: "on hold|hold music|in person|connect me|connect us|put me through|"
        "real person|customer service|member of staff|"
        "set up by|thank you|that fixed it|fixed it|it worked|that worked|call me|"
        "call me back|call back|callback|ring me|phone me|get in touch|contact me|speak to|"
        "talk to|speak with|talk with|someone|somebody|anyone|anybody",
    },
}
"""concept -> {weight: "phrase|phrase|…"}; the empty concept blocks misleading matches."""

CONCEPTS: dict[str, dict[float, str]] = {}
for _table in (COMMON, TRAVEL, TELECOM, FINANCE, SOFTWARE):
    for _concept, _by_weight in _table.items():
        _merged = CONCEPTS.setdefault(_concept, {})
        for _weight, _phrases in _by_weight.items():
            _merged[_weight] = f"{_merged[_weight]}|{_phrases}" if _weight in _merged else _phrases

PARENTS: dict[str, str] = {
    "card": "billing",
    "transfer": "billing",
    "statement": "billing",
    "debt": "billing",
    "credit": "billing",
    "tariff": "billing",
    "outage": "troubleshooting",
    "bug": "troubleshooting",
    "speed": "connectivity",
    "router": "connectivity",
    "install": "setup",
    "appointment": "install",
    "upgrade": "subscription",
    "addon": "subscription",
    "deal": "subscription",
    "contract": "subscription",
    "switching": "cancellation",
    "fraud": "security",
    "dispute": "fraud",
    "closure": "account",
    "savings": "account",
    "sso": "signin",
    "permissions": "users",
    "compliance": "privacy",
    "medical": "vulnerable",
    "assistance": "vulnerable",
    "glass": "claim",
    "courtesy": "claim",
    "repair": "claim",
    "ncd": "policy",
}
"""narrow concept -> the broader concept a hit on it also counts for (at PARENT_FACTOR)."""
PARENT_FACTOR = 0.5
_HITS_KEPT = 16384
"""Wordings whose hits a lexicon keeps made (see `Lexicon._said`)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One concept found in a text: which words said it and how strongly."""

    concept: str
    surface: str
    weight: float
    derived: bool = False


def _stems(phrase: str) -> tuple[str, ...]:
    return tuple(stem(w) for w in words(phrase))


class Lexicon:
    """The compiled lexicon: stemmed phrases, longest first, mapped to concepts."""

    def __init__(
        self,
        concepts: dict[str, dict[float, str]] | None = None,
        parents: dict[str, str] | None = None,
    ) -> None:
        self._parents = PARENTS if parents is None else parents
        table: dict[tuple[str, ...], tuple[str, float]] = {}
        for concept, by_weight in (concepts or CONCEPTS).items():
            for weight, alternatives in by_weight.items():
                for phrase in alternatives.split("|"):
                    key = _stems(phrase)
                    if key and (key not in table or table[key][1] < weight):
                        table[key] = (concept, weight)
        self._table = table
        # The longest phrase that starts with each stem: most words start none, and are
        # passed over with one lookup instead of one per possible phrase length.
        longest: dict[str, int] = {}
        for key in table:
            longest[key[0]] = max(longest.get(key[0], 0), len(key))
        self._longest_from = longest
        self._hits_made: dict[tuple[str, str, float], tuple[Hit, ...]] = {}
        self.vocabulary = frozenset(s for key in table for s in key if len(s) >= 4)

    def hits(self, tokens: Sequence[Token]) -> tuple[list[Hit], list[str | None]]:
        """Concept hits in `tokens`, and the concept (or "" for a blocker) that consumed each
        token, None where no phrase did."""
        stems = [t.stem for t in tokens]
        count = len(stems)
        used: list[str | None] = [None] * count
        found: list[Hit] = []
        longest_from, table = self._longest_from, self._table
        i = 0
        while i < count:
            longest = longest_from.get(stems[i])
            if longest is None:  # most words start no phrase
                i += 1
                continue
            for size in range(min(longest, count - i), 0, -1):
                entry = table.get(tuple(stems[i : i + size]))
                if entry is not None:
                    break
            else:
                i += 1
                continue
            concept, weight = entry
            if concept:
                said_as = tokens[i].surface if size == 1 else _surface(tokens[i : i + size])
                found.extend(self._said(concept, said_as, weight))
            used[i : i + size] = [concept] * size
            i += size
        return found, used

    def _said(self, concept: str, surface: str, weight: float) -> tuple[Hit, ...]:
        """The hit of `concept` said as `surface`, and its parent's; made once per wording
        (customers say "my order" again and again) and shared, as hits never change."""
        key = (concept, surface, weight)
        said = self._hits_made.get(key)
        if said is None:
            said = (Hit(concept, surface, weight),)
            parent = self._parents.get(concept)
            if parent:
                said += (Hit(parent, surface, weight * PARENT_FACTOR, derived=True),)
            if len(self._hits_made) >= _HITS_KEPT:
                self._hits_made.clear()  # wordings are many: start again rather than grow
            self._hits_made[key] = said
        return said


def _surface(tokens: Sequence[Token]) -> str:
    return " ".join([t.surface for t in tokens])


DEFAULT_LEXICON = Lexicon()
