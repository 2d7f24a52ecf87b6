"""Answer-type filtering (classic QA): what KIND of answer a question expects, and whether a text has one.

"How much does it cost?" wants a price, "how many queries can I create?" a number, "how
long will it take?" a duration, "which languages …?" a language, "which regions …?" a
place. If the sentences an answer cites hold nothing of that kind, they talk about the
topic without answering the question, and the answer service declines instead.

Detection is deliberately narrow: only question forms that ask for the type (a "how
much", "what is the cost", "is it free", "which regions"), not every mention of a word
("change my pricing plan", "limit my search to one user", "select Minimum Backlight").
A question with no detected type passes the check untouched.
"""

from __future__ import annotations

import re
from enum import Enum


class AnswerType(Enum):
    COST = "cost"
    QUANTITY = "quantity"
    DURATION = "duration"
    LANGUAGE = "language"
    LOCATION = "location"


LANGUAGES = (
    "english",
    "spanish",
    "french",
    "german",
    "italian",
    "portuguese",
    "dutch",
    "japanese",
    "chinese",
    "korean",
    "arabic",
    "russian",
    "hindi",
    "czech",
    "swedish",
    "polish",
    "turkish",
    "hebrew",
    "greek",
)
_LANG = "|".join(LANGUAGES)

# Places a "which regions/locations" answer names: continents and large regions, the
# countries and cities cloud and SaaS documentation lists, and region codes (us-south, eu-de).
PLACES = (
    "africa|asia|europe|america|americas|australia|emea|apac|latam|pacific"
    "|united states|united kingdom|canada|brazil|mexico|germany|france|spain|italy|netherlands"
    "|japan|china|india|korea|singapore|ireland|switzerland|sweden"
    "|dallas|washington|frankfurt|london|paris|madrid|milan|amsterdam|tokyo|osaka|sydney"
    "|toronto|montreal|sao paulo|são paulo|chennai|mumbai|seoul|hong kong"
)

_COST_WORD = (
    r"(?:cost|costs|price|prices|priced|fee|fees|charge|charges|charged|paid|free|expensive|cheap|cheaper)"
)
_TIME_UNIT = r"(?:milliseconds?|seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|ms|sec|h|d)"
_NUMBER_WORD = (
    r"(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty"
    r"|hundred|hundreds|thousand|thousands|million|millions|billion|dozen|dozens|unlimited"
    r"|no limit|no maximum)"
)

_QUESTION = {
    AnswerType.COST: re.compile(
        r"\bhow much\b[^.?!]*\b(?:cost|costs|charge|charged|pay|paid|price|fee|fees|per (?:month|year|hour|user|gb))\b"
        r"|\bhow much (?:is|are|does|do|will|would|could|can) (?:it|this|that|they|these|those)\b"
        r"|\b(?:cost|price|prices|fee|fees|charges) (?:of|for)\b"
        r"|\b(?:what|what's|whats) (?:is |are )?(?:the )?(?:\w+ ){0,2}(?:cost|costs|price|prices|fee|fees)\b"
        r"|\b(?:average|current|total|monthly|hourly|annual) (?:cost|costs|price|prices|fee|fees)\b"
        r"|\b(?:is|are) (?:it|this|that|they|there|the \w+(?: \w+){0,2}|\w+(?: \w+){0,2}) (?:a |an )?"
        r"(?:free|expensive|cheap|chargeable|billable)\b"
        r"|\b(?:a|is it|are they) paid\b"
        r"|\b(?:do|does|will|would) (?:i|we|you|it|they) (?:have to |need to )?(?:pay|cost)\b",
        re.I,
    ),
    AnswerType.DURATION: re.compile(
        r"\bhow long (?:does|do|did|will|would|could|can|should|must|is|are|has|have|to|until|before|it (?:takes?|will|would))\b"
        r"|\bhow (?:soon|quickly)\b"
        r"|\bwhen (?:will|would|can i expect|should i expect)\b",
        re.I,
    ),
    AnswerType.LANGUAGE: re.compile(
        rf"\b(?:which|what|how many) (?:\w+ )?languages?\b"
        rf"|\b(?:available|offered|provided|supported|support|supports|work|works) in (?:{_LANG})\b"
        rf"|\b(?:speak|speaks|understand|understands) (?:{_LANG})\b",
        re.I,
    ),
    AnswerType.LOCATION: re.compile(
        r"\b(?:which|what|in which|in what) (?:\w+ ){0,2}(?:regions?|locations?|countries|country|data ?cent(?:er|re)s?|geographies)\b"
        r"|\b(?:regions?|locations?|countries) (?:where|in which)\b"
        r"|\bwhere (?:is|are) (?:it|this|that|they|\w+(?: \w+){0,2}) (?:available|offered|hosted|located)\b",
        re.I,
    ),
    AnswerType.QUANTITY: re.compile(
        r"\bhow (?:many|much)\b"
        r"|\bthe (?:maximum|minimum|max|min)\b"
        r"|\b(?:maximum|minimum|max|min) (?:number|amount|size|count|length|of)\b",
        re.I,
    ),
}

_EVIDENCE = {
    AnswerType.COST: re.compile(
        r"[$€£¥₹]|\b(?:usd|eur|gbp|jpy|inr|dollars?|euros?|cents?)\b"
        r"|\bfree\b|\bno (?:additional |extra )?(?:cost|charge|fee)s?\b|\bat no cost\b"
        rf"|\d[\d,.]*\s*(?:\w+\s+){{0,3}}{_COST_WORD}\b|\b{_COST_WORD}\s+(?:\w+\s+){{0,3}}\d"
        r"|\bper (?:hour|month|year|gb|user|instance)\b",
        re.I,
    ),
    # A digit inside a name (IKEv2, S3) is no count; "one" counts only as a count ("only one
    # copy"), not in "one of", "one or more", "one another".
    AnswerType.QUANTITY: re.compile(rf"\b\d|\b{_NUMBER_WORD}\b|\bone\b(?! of\b| or\b| another\b)", re.I),
    AnswerType.DURATION: re.compile(
        rf"\d\s*{_TIME_UNIT}\b|\b(?:a|an|one|few|several|{_NUMBER_WORD}) (?:\w+ )?{_TIME_UNIT}\b"
        r"|\b(?:seconds|minutes|hours|days|weeks|months|years)\b"
        r"|\b(?:immediately|instantly|instantaneous|real[- ]time|right away|daily|weekly|hourly|monthly|overnight)\b",
        re.I,
    ),
    AnswerType.LANGUAGE: re.compile(rf"\b(?:{_LANG})\b", re.I),
    AnswerType.LOCATION: re.compile(
        rf"\b(?:{PLACES})\b|\b(?:us|eu|jp|au|ca|br|uk|in|kr|ap)-[a-z]{{2,}}\b", re.I
    ),
}

# What does not count as evidence: citation markers, links and inline code/URLs (they are
# full of digits that answer nothing).
_NOISE = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]|\]\([^)]*\)|https?://\S+|`[^`]*`")

# Checked in this order: a cost question is also a "how much" question.
ORDER = (AnswerType.COST, AnswerType.DURATION, AnswerType.LANGUAGE, AnswerType.LOCATION, AnswerType.QUANTITY)


def expected_type(question: str) -> AnswerType | None:
    """The kind of answer ``question`` asks for, or None when it asks for no particular kind."""
    for kind in ORDER:
        if _QUESTION[kind].search(question):
            return kind
    return None


def has_type(text: str, kind: AnswerType, question: str = "") -> bool:
    """Whether ``text`` holds an answer of ``kind``.

    A language question that names languages ("is it available in Spanish?") needs one of
    those named, not just any language.
    """
    clean = _NOISE.sub(" ", text)
    if kind is AnswerType.LANGUAGE:
        named = {m.lower() for m in re.findall(rf"\b(?:{_LANG})\b", question, re.I)}
        if named:
            return any(m.lower() in named for m in re.findall(rf"\b(?:{_LANG})\b", clean, re.I))
    return _EVIDENCE[kind].search(clean) is not None
