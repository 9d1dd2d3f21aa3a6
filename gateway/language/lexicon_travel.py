"""Travel concepts: bookings, changes, seats, check-in, luggage, loyalty, special assistance."""

from __future__ import annotations

from gateway.language.weights import MID, STRONG

TRAVEL: dict[str, dict[float, str]] = {
    "booking": {
        STRONG: "booking|bookings|book|booked|reservation|reserve|reserved|ticket|tickets|"
        "itinerary|new booking|return flight|my trip|trip|flight booking",
        MID: "flight|flights|fly|flying|travel date",
    },
    "change": {
        STRONG: "change my flight|changing flights|rebook|rebooked|reschedule|move my flight|"
        "change the date|change my booking|different flight|earlier flight|later flight|"
        "next flight|change the name|name change",
        MID: "change|changes|changing|move|date",
    },
    "cancellation": {
        STRONG: "cancel|cancellation|cancellations|cancelled|canceled|cancelling|canceling",
    },
    "seat": {
        STRONG: "seat|seats|seat selection|window seat|aisle|legroom|business class|"
        "first class|economy|sit together|seats together",
    },
    "checkin": {
        STRONG: "check in|check-in|checkin|checking in|online check in|boarding pass|"
        "boarding passes|boarding|gate",
    },
    "baggage": {
        STRONG: "baggage|luggage|suitcase|suitcases|bag|bags|checked bag|cabin bag|"
        "hand luggage|carry on|carry-on|hold luggage|backpack|holdall|kilos|kg|"
        "weight limit|allowance|allowed on board|excess baggage|baggage claim|lost bag|"
        "luggage claim",
        MID: "allowed|size|dimensions|heavy|overweight|collected|carousel",
    },
    "damage": {
        STRONG: "damaged|damage|ripped|torn|smashed|wheel off|broken handle|cracked|dented",
        MID: "broke|broken|scratched",
    },
    "sports_equipment": {
        STRONG: "golf|golf clubs|ski|skis|snowboard|surfboard|sports equipment|clubs|"
        "bike box|bicycle box",
    },
    "miles": {
        STRONG: "miles|mile|points|frequent flyer|frequent flier|skymiles|loyalty|rewards|"
        "reward|redeem|award|miles balance|credited|earn",
        MID: "balance|partner|partners|member",
    },
    "tier": {
        STRONG: "tier|tiers|gold|silver|platinum|elite|status level|gold status",
    },
    "assistance": {
        STRONG: "wheelchair|mobility|disability|disabled|special assistance|reduced mobility|"
        "blind|deaf|walking frame|crutches|help getting to the gate",
        MID: "assistance|assist",
    },
    "pets": {
        STRONG: "pet|pets|dog|dogs|cat|cats|puppy|kitten|animal|animals|service animal",
    },
    "medical": {
        STRONG: "medical|medication|medicine|insulin|diabetic|diabetes|pregnant|pregnancy|"
        "oxygen|doctor|allergy|allergic|condition|conditions|epilepsy|surgery",
    },
    "minors": {
        STRONG: "unaccompanied|minor|minors|child travelling alone|flying alone|"
        "travelling alone|traveling alone|year old|child|children|kid|kids",
        MID: "alone|son|daughter|teenager",
    },
    "meals": {
        STRONG: "meal|meals|food|vegan|vegetarian|gluten|gluten-free|halal|kosher|dietary|"
        "diet|nut allergy|special meal",
    },
}
"""concept -> {weight: "phrase|phrase|…"} for airlines and travel brands."""
