"""Behaviour of the rule-based adapter: negations, explanations, history, summaries."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.language.catalog import load_catalog
from gateway.language.frustration import LastAnswers
from gateway.language.rules import RulesLanguage
from gateway.language.summary import MAX_CHARS
from gateway.language.text import Corrector, correct, edit_distance_at_most_one, stem, words
from routing.language import Candidate, TaskView, Turn

ACME = load_catalog(Path(__file__).parent / "data" / "acme_catalog.json")
SUPPORT, ORDERS, ACCOUNTS = (c.address for c in ACME)


@pytest.mark.parametrize(
    "text",
    [
        "No need for a person, just tell me where my parcel is.",
        "I don't want to talk to a human, send me the reset link.",
        "The person at the store said this was covered.",
        "My son is a real person and he set the speaker up.",
        "Is it a real person answering these messages?",
        "Without talking to a human, can I cancel my plan online?",
        "I'd rather not speak to anyone, email is fine.",
        "A human at your call centre told me to write here.",
        "Never mind the human, the reset link worked.",
        "I talked to someone last week and they said it was fixed.",
        "Your colleague told me a refund was coming.",
        "Could someone come back and tidy up the cable?",
        "No need to call me, a message is fine.",
        "I'd rather do it online than talk to a person.",
        "My manager will call you about the invoice.",
        "One of your advisers helped me last month, thanks.",
        "Someone from your company phoned me yesterday about a refund.",
    ],
)
async def test_mentions_and_negations_are_not_requests(text: str) -> None:
    """Declined, reported or descriptive mentions of a person do not ask for one."""
    signals = await RulesLanguage().signals(text, ())
    assert signals.wants_human is False, signals.why


@pytest.mark.parametrize(
    "text",
    [
        "Can I speak to a real person please?",
        "Put me through to a supervisor.",
        "I want a human.",
        "Is a representative available?",
        "Can someone from your team call me back?",
        "I'd rather sort this out with a person, not a bot.",
        "Please put me through to a technician.",
        "Could a member of your staff telephone me?",
        "Somebody senior needs to call me today.",
        "Get me someone who can cancel it.",
        "I'd prefer to discuss closing my late father's account with a person.",
        "Is there anybody there I could speak to?",
        "Can someone from your billing team get in touch?",
        "Could an adviser help me with the form?",
        "Would one of your technicians be able to phone me?",
        "Have somebody from accounts give us a bell.",
        "Can somebody go through the bill with me over the phone?",
        "Please get an engineer on the line.",
        "I would sooner arrange the move with a member of staff.",
        "Operator, please.",
        "Could a member of your lettings team contact me?",
    ],
)
async def test_requests_for_a_person_are_detected(text: str) -> None:
    """Request frames around a word or role for a person are requests, and say what fired."""
    signals = await RulesLanguage().signals(text, ())
    assert signals.wants_human is True
    assert "asks for a person" in signals.why


async def test_declined_person_is_explained() -> None:
    """A negated request says in `why` that it was declined, not silently ignored."""
    signals = await RulesLanguage().signals("No need to talk to a person, thanks.", ())
    assert signals.wants_human is False
    assert "declines" in signals.why


@pytest.mark.parametrize(
    "text",
    [
        "This is RIDICULOUS",
        "Third time I'm writing about this.",
        "You charged me twice!!",
        "I'm fed up with this.",
        "Still waiting for my refund.",
        "Great, internet down again.",
        "Your link is broken. Of course it is.",
        "Oh fantastic, the delivery is late. Brilliant service as always.",
        "Fix it or I'm going to the ombudsman.",
        "I've called you four times about this.",
        "Second month in a row the bill is wrong.",
        "It keeps disconnecting, it's driving me mad.",
        "Honestly, I'm losing my mind with this router.",
        "We have waited long enough for the engineer.",
        "Sort out the bill by Monday or I'm disputing it with my card issuer.",
        "If the refund isn't back before the weekend I'll be writing to my MP.",
        "Lovely. The heating app is down. Again.",
        "I'm done being reasonable about this delivery.",
        "Your broadband is a bloody joke.",
        "Replacement arrived with the same fault. Get me a supervisor.",
        "Send me an actual person. NOW.",
    ],
)
async def test_frustration_cues(text: str) -> None:
    """Anger, repetition, contact counts, threats, sarcasm, idioms, shouting and !! count."""
    assert (await RulesLanguage().signals(text, ())).frustrated is True


@pytest.mark.parametrize(
    "text",
    [
        "I'm not annoyed, just curious: do you ship to Ireland?",
        "Thanks, that fixed it!",
        "Great, it works again, thank you!",
        "My email keeps giving an SMTP error.",
        "Still no reply on my refund, could you check?",
        "Why has my monthly payment gone up?",
        "The picture looks awful in dark scenes, which setting fixes that?",
        "Our previous supplier was dreadful, so what tariffs do you offer?",
        "If my parcel isn't here by Friday can I get a refund?",
        "Please send it NOW if possible, I leave tomorrow.",
        "A charge from ZX*MEDIA I don't know, how do I query it?",
        "Great. Another question: do you ship to Spain?",
    ],
)
async def test_calm_messages_are_not_frustrated(text: str) -> None:
    """A negated anger word, a thank-you, an acronym or one faint cue alone is not frustration."""
    assert (await RulesLanguage().signals(text, ())).frustrated is False


async def test_repeated_question_in_history_is_frustration() -> None:
    """Asking the same question again after the brand answered it counts as frustration."""
    history = (
        Turn("a@people.example", "initiator", "say", "Where is my order A-1009 please"),
        Turn("orders@acme-audio.example", "responder", "say", "It is on its way."),
    )
    text = "Where is my order A-1009?"
    language = RulesLanguage()
    assert (await language.signals(text, ())).frustrated is False
    signals = await language.signals(text, history)
    assert signals.frustrated is True
    assert "asked before" in signals.why


async def test_a_similar_message_before_any_answer_is_not_frustration() -> None:
    """Two similar messages before the brand has said anything are a resend or a split
    request, not someone going round in circles."""
    history = (Turn("a@people.example", "initiator", "say", "Where is my order A-1009 please"),)
    signals = await RulesLanguage().signals("Where is my order A-1009?", history)
    assert signals.frustrated is False


def _last_answer_read_in_full(history: list[Turn]) -> int:
    answering = [i for i, t in enumerate(history) if t.side in ("responder", "operator")]
    return max(answering, default=-1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["initiator", "responder", "operator", "gateway"]), max_size=40))
def test_last_answers_follow_a_history_as_the_escalator_reuses_it(sides: list[str]) -> None:
    """`LastAnswers` remembers each history between messages; whether it grew by a turn,
    moved on as a full window does (the second turn out, a new one in), was copied or
    replaced by another with the same first turn, the index is that of a full reading."""
    answers = LastAnswers(size=4)
    turns = [Turn("x@example", side, "say", f"turn {i}") for i, side in enumerate(sides)]
    history: list[Turn] = []
    for turn in turns:
        history = [*history, turn]
        assert answers.index(history) == _last_answer_read_in_full(history)
        if len(history) > 6:  # the window is full: it moves on
            history = [history[0], *history[2:]]
            assert answers.index(history) == _last_answer_read_in_full(history)
    copy = [Turn(t.sender, t.side, t.act, t.text) for t in history]
    assert answers.index(copy) == _last_answer_read_in_full(copy)
    for cut in range(len(history)):  # shorter histories with the same first turn
        assert answers.index(history[:cut]) == _last_answer_read_in_full(history[:cut])
    other = [*history[:1], *reversed(history[1:])]
    assert answers.index(tuple(other)) == _last_answer_read_in_full(other)


async def test_route_names_matched_terms() -> None:
    """The routing explanation names the customer's words and the agent's skill they met."""
    choice = await RulesLanguage().route("Where is my parcel? It never arrived.", ACME)
    assert choice.address == ORDERS
    assert "parcel" in choice.why and "shipping and delivery" in choice.why


@pytest.mark.parametrize("text", ["Thanks, that fixed it!", "Hello!", "ok", ""])
async def test_nothing_fits_gives_no_address(text: str) -> None:
    """A message with no topic routes nowhere, and says so."""
    choice = await RulesLanguage().route(text, ACME)
    assert choice.address is None
    assert "nothing fits" in choice.why


async def test_typos_are_corrected() -> None:
    """One-letter typos in topic words still route (`conect`, `acount`, `pasword`)."""
    language = RulesLanguage()
    assert (await language.route("speaker wont conect", ACME)).address == SUPPORT
    assert (await language.route("cant open my acount, pasword wrong", ACME)).address == ACCOUNTS


async def test_rank_orders_every_candidate() -> None:
    """Directory search returns every candidate, best first, with scores descending."""
    ranked = await RulesLanguage().rank("firmware update for my soundbar", ACME)
    assert ranked[0].address == SUPPORT
    assert sorted(r.address for r in ranked) == sorted(c.address for c in ACME)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)


async def test_summary_has_reason_opening_data_and_latest_within_bound() -> None:
    """The summary keeps the reason, the opening request, data facts and the last turn."""
    turns = [Turn("alice@people.example", "initiator", "say", "My order A-1009 never came.")]
    turns += [
        Turn("orders@acme-audio.example", "responder", "say", f"Checking step {i} " * 20)
        for i in range(30)
    ]
    turns.append(
        Turn("alice@people.example", "initiator", "say", "Get me a person.", ({"order": "A-1009"},))
    )
    task = TaskView(
        "t1",
        "alice@people.example",
        ORDERS,
        "escalated",
        tuple(turns),
        reason="human_requested",
        reason_text="asked for a person",
    )
    summary = await RulesLanguage().summarise(task)
    assert len(summary) <= MAX_CHARS
    assert "human_requested" in summary
    assert "never came" in summary
    assert "order: A-1009" in summary
    assert "Get me a person." in summary


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
async def test_any_text_is_handled(text: str) -> None:
    """Arbitrary text never raises, and a route is always a candidate or None."""
    language = RulesLanguage()
    choice = await language.route(text, ACME)
    assert choice.address in {None, SUPPORT, ORDERS, ACCOUNTS}
    signals = await language.signals(text, ())
    assert 0.0 <= signals.confidence <= 1.0


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", max_size=30))
def test_words_are_lowercase_without_apostrophes(text: str) -> None:
    """Tokens are lowercase ASCII words with contractions joined."""
    for w in words(text.upper()):
        assert w == w.lower() and "'" not in w and w


@given(st.text(alphabet="abcdef", max_size=8), st.text(alphabet="abcdef", max_size=8))
def test_edit_distance_is_symmetric(a: str, b: str) -> None:
    """The one-edit test gives the same answer both ways round."""
    assert edit_distance_at_most_one(a, b) == edit_distance_at_most_one(b, a)


def test_stem_folds_inflections() -> None:
    """Inflected forms meet at one stem (shipped/shipping/ships; refunds/refund)."""
    assert stem("shipped") == stem("shipping") == stem("ships") == "ship"
    assert stem("refunds") == stem("refund")
    assert stem("passwords") == stem("password")


@given(
    st.text(alphabet="abcdefg", min_size=5, max_size=8),
    st.frozensets(st.text(alphabet="abcdefg", min_size=4, max_size=8), max_size=30),
)
def test_indexed_corrector_agrees_with_the_scan(word: str, vocabulary: frozenset[str]) -> None:
    """The deletion-indexed corrector gives the same answer as the linear scan."""
    assert Corrector(vocabulary).correct(word) == correct(word, vocabulary)


async def test_narrow_concept_reaches_an_agent_through_its_parent() -> None:
    """A card problem reaches an agent whose card says only "payments" (card -> billing)."""
    shop = (
        Candidate("pay@shop.example", "Payments and invoices.", ("invoices and payments",)),
        Candidate("help@shop.example", "Product help.", ("how-to questions",)),
    )
    choice = await RulesLanguage().route("my debit card was declined", shop)
    assert choice.address == "pay@shop.example"


async def test_the_agent_using_the_customers_own_word_wins_a_shared_concept() -> None:
    """Two agents share 'lending'; the one whose card says "overdrafts" gets "my overdraft"."""
    bank = (
        Candidate("homes@b.example", "Mortgages.", ("mortgage applications",)),
        Candidate("daily@b.example", "Current accounts.", ("overdrafts", "debit cards")),
    )
    choice = await RulesLanguage().route("Can I extend my overdraft?", bank)
    assert choice.address == "daily@b.example"
    assert "same word" in choice.why


async def test_thanks_for_past_help_and_a_separate_thing_are_context() -> None:
    """What follows 'separate thing:' decides the route, not the thanks for earlier help."""
    bank = (
        Candidate("online@b.example", "Online banking.", ("login and passwords",)),
        Candidate("cards@b.example", "Cards.", ("disputed transactions and chargebacks",)),
    )
    text = "Thanks for fixing my login. Separate thing: a payment I didn't make, can I dispute it?"
    choice = await RulesLanguage().route(text, bank)
    assert choice.address == "cards@b.example"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("How do I move my cash ISA to you?", "savings@b.example"),
        ("What's the interest on the easy access saver?", "savings@b.example"),
        ("Please send me the sort code and account number.", "current@b.example"),
        ("There's a chargeback I raised last month, any news?", "current@b.example"),
    ],
)
async def test_finance_lexicon_reaches_savings_and_account_agents(text: str, expected: str) -> None:
    """Savings products, interest, account details and disputes reach the agent for them."""
    bank = (
        Candidate("savings@b.example", "Savings.", ("ISAs and bonds", "interest rates")),
        Candidate("current@b.example", "Current accounts.", ("account details", "card disputes")),
        Candidate("homes@b.example", "Mortgages.", ("mortgage applications",)),
    )
    assert (await RulesLanguage().route(text, bank)).address == expected
