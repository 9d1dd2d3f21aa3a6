"""Banking and insurance concepts: cards, payments, lending, fraud, claims, policies, breakdown."""

from __future__ import annotations

from gateway.language.weights import MID, STRONG

FINANCE: dict[str, dict[float, str]] = {
    "card": {
        STRONG: "card|cards|debit card|credit card|bank card|contactless|pin|pin number|"
        "chip|cash machine|cashpoint|atm|swallowed|card declined|declined|card blocked|"
        "blocked card|frozen card|lost and stolen|lost or stolen|freeze my card|"
        "replacement card|new card|lost card|"
        "lost my card|card reader|card payment|payment method|payment methods|payment details|"
        "card details",
        MID: "rejected|refused",
    },
    "transfer": {
        STRONG: "transfer|transfers|bank transfer|send money|sent money|sending money|"
        "payee|payees|standing order|standing orders|faster payment|international payment|"
        "international payments|iban|swift|wire|wire transfer|"
        "euros|dollars|foreign currency|direct debit|direct debits|dd|pay my rent|"
        "pay the rent|rent payment",
        MID: "rent",
    },
    "lending": {
        STRONG: "loan|loans|borrow|borrowing|overdraft|overdrafts|arranged overdraft|"
        "mortgage|mortgages|remortgage|remortgaging|fixed rate|fixed deal|tracker|"
        "credit check|credit checks|credit score|credit rating|credit application|lend|lending|"
        "pay off|repayments|loan repayments|finance|overdrawn|go overdrawn|arrears|"
        "overpay|overpaying|overpayment|overpayments|secured lending|valuation|property valuation|"
        "product transfer|product switch|loan payment|loan payments|borrowed",
    },
    "fraud": {
        STRONG: "fraud|fraudulent|scam|scams|scammed|phishing|suspicious|hacked|hack|"
        "compromised|unauthorised|unauthorized|didnt make|didn't make|did not make|not me|"
        "identity theft|stolen identity|pretending to be|impersonating|fake text|fake email|"
        "click a link|clicked a link|spoof|spoofed|account in my name|"
        "opened an account in my name|through a link|via a link|with a link|link to click|"
        "confirm my details|verify my details|is that really you|is that really from you|"
        "is this really from you|really from you|genuine|legit|legitimate",
    },
    "dispute": {
        STRONG: "dispute|disputes|disputed|disputing|chargeback|chargebacks|charge back|"
        "fraudulent transaction|fraudulent transactions|fraudulent payment|"
        "fraudulent payments|fraudulent charge|fraudulent charges|didnt make|didn't make|"
        "did not make|didnt authorise|didn't authorise|never authorised|used my card|"
        "used my card details|card details used|cloned|cloned card|money taken from my card|"
        "unauthorised transaction|unauthorised transactions|unauthorised payment|"
        "unauthorised payments",
        MID: "dont recognise|don't recognise|do not recognise|dont recognize|don't recognize",
    },
    "savings": {
        STRONG: "savings|saver|savers|savings account|saving account|isa|isas|cash isa|"
        "stocks and shares isa|bond|bonds|fixed bond|fixed rate bond|fixed-rate bond|"
        "fixed term|fixed-term|easy access|instant access|notice account|regular saver|"
        "withdrawal|withdrawals|withdraw|premium bonds|junior isa|lisa|savings pot|"
        "isa transfer|isa transfers|transfer my isa|move my isa",
        MID: "save|saving",
    },
    "interest": {
        STRONG: "interest|interest rate|interest rates|rate of interest|aer|apr|gross rate",
    },
    "closure": {
        STRONG: "close my account|closing my account|close the account|close an account|"
        "closing accounts|account closure|closing the account|shut my account|"
        "close my savings account|close my current account",
        MID: "closure|closures|close|closing",
    },
    "theft": {
        STRONG: "theft|stolen|stole|burgled|burglary|break in|broken into|pickpocketed",
    },
    "statement": {
        STRONG: "statement|statements|bank statement|paper statements|balance certificate|"
        "certificate of interest|interest certificate|tax certificate|paperless|paper bill|"
        "paper bills|"
        "paperless bills|e-bill|ebill|pdf|pdfs|bills emailed|bill emailed|bill by email|"
        "copy of my bill|e-statement",
    },
    "debt": {
        STRONG: "debt|debts|arrears|owe|struggling to pay|cant afford|can't afford|"
        "payment plan|payment plans|instalments|installments|hardship|payment arrangement|"
        "payment arrangements|debt collection",
    },
    "credit": {
        STRONG: "in credit|credit balance|credit balances|account credit|credit",
    },
    "claim": {
        STRONG: "claim|claims|make a claim|claim form|claim handler|excess|accident|"
        "collision|reversed into|hit my car|bumped|prang|write off|written off|insurance claim",
    },
    "ncd": {
        STRONG: "no claims discount|no claims bonus|no claims|ncd|ncb",
    },
    "courtesy": {
        STRONG: "courtesy car|courtesy cars|hire car|replacement car|rental car|loan car",
    },
    "glass": {
        STRONG: "windscreen|windshield|stone chip|chip in the glass|crack in the glass",
    },
    "repair": {
        STRONG: "garage|garages|repair|repairs|repairer|bodywork|body shop|being fixed",
    },
    "policy": {
        STRONG: "policy|policies|insurance|insured|my cover|named driver|add a driver|"
        "driver|drivers|young driver|policy renewal|policy renewals",
    },
    "breakdown": {
        STRONG: "breakdown|breakdowns|broken down|broke down|break down|wont start|won't start|"
        "flat battery|battery flat|battery is flat|flat batteries|flat tyre|flat tire|"
        "puncture|tyre|tyres|tow|towing|recovery|recovery truck|roadside|stranded|misfuel|"
        "misfuelling|wrong fuel|petrol in my diesel|diesel in my petrol|locked out of the car|"
        "keys locked|locked my keys|locked inside|locked in the car|keys inside|jump start|"
        "spare wheel|no spare",
    },
}
"""concept -> {weight: "phrase|phrase|…"} for banks, lenders and insurers."""
