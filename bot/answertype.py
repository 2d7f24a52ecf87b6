"""Answer-type detection (classic QA): what KIND of answer a question expects, and whether a text has one.

"How much does it cost?" wants a price, "how many …?" a number, "how long …?" a duration,
"which languages …?" a language, "which regions …?" a place. Only the classic question
forms are recognised (wh-phrases that ask for the type), nothing fitted to particular
questions. It is no longer a decline rule of its own: the answerability model
(bot/answerability.py) reads it as two features (the question asks for a kind of answer;
the top passages' sentences hold none), and their weight is learned leave-one-set-out.
The extractive answerer prefers sentences that hold the asked-for kind.
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
        r"\bhow much\b[^.?!]*\b(?:cost|costs|charge|charged|pay|paid|price|fee|fees)\b"
        r"|\b(?:cost|price|prices|fee|fees) (?:of|for)\b"
        r"|\b(?:what|what's|whats) (?:is |are )?(?:the )?(?:cost|costs|price|prices|fee|fees)\b",
        re.I,
    ),
    AnswerType.DURATION: re.compile(r"\bhow long\b|\bhow (?:soon|quickly)\b", re.I),
    AnswerType.LANGUAGE: re.compile(r"\b(?:which|what|how many) languages?\b", re.I),
    AnswerType.LOCATION: re.compile(
        r"\b(?:which|what|in which|in what) (?:regions?|locations?|countries|country|cities|city)\b"
        r"|\bwhere (?:is|are)\b[^.?!]*\b(?:located|available|hosted|based)\b",
        re.I,
    ),
    AnswerType.QUANTITY: re.compile(
        r"\bhow (?:many|much)\b|\b(?:maximum|minimum|max|min) (?:number|amount|size|count|length)\b",
        re.I,
    ),
}

_EVIDENCE = {
    AnswerType.COST: re.compile(
        r"[$€£¥₹]|\b(?:usd|eur|gbp|jpy|inr|dollars?|euros?|pounds?|cents?)\b"
        r"|\bfree\b|\bno (?:additional |extra )?(?:cost|charge|fee)s?\b"
        rf"|\d[\d,.]*\s*(?:\w+\s+){{0,3}}{_COST_WORD}\b|\b{_COST_WORD}\s+(?:\w+\s+){{0,3}}\d"
        r"|\bper (?:hour|month|year|user)\b",
        re.I,
    ),
    # A digit inside a name (IKEv2, S3) is no count; "one" counts only as a count ("only one
    # copy"), not in "one of", "one or more", "one another".
    AnswerType.QUANTITY: re.compile(rf"\b\d|\b{_NUMBER_WORD}\b|\bone\b(?! of\b| or\b| another\b)", re.I),
    AnswerType.DURATION: re.compile(
        rf"\d\s*{_TIME_UNIT}\b|\b(?:a|an|one|few|several|{_NUMBER_WORD}) (?:\w+ )?{_TIME_UNIT}\b"
        r"|\b(?:seconds|minutes|hours|days|weeks|months|years)\b"
        r"|\b(?:immediately|instantly|right away|daily|weekly|hourly|monthly|overnight)\b",
        re.I,
    ),
    AnswerType.LANGUAGE: re.compile(rf"\b(?:{_LANG})\b", re.I),
    # A place is a proper noun: a capitalised word that does not start the sentence.
    AnswerType.LOCATION: re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b"),
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
