"""Follow-up questions rewritten into standalone search queries (the offline, rule-based rewrite).

"Does it work on Linux?" after "How do I install the CLI?" searches for
"Does it work on Linux? install CLI". The topic is carried forward from the thread's
earlier user turns when the new question is short or leans on them ("it", "that", "also").
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.text import content_words, words
from bot.types import Turn

ANAPHORA = frozenset(
    [
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "they",
        "them",
        "their",
        "there",
        "same",
        "also",
        "else",
        "other",
        "another",
        "more",
        "one",
        "ones",
        "such",
        "former",
        "latter",
        "above",
        "previous",
    ]
)
SHORT = 6
CARRY = 8


def needs_context(question: str) -> bool:
    """Whether a question leans on earlier turns: it is short or refers back."""
    ws = words(question)
    return len(content_words(question)) < SHORT or any(w in ANAPHORA for w in ws)


def standalone_query(question: str, history: Sequence[Turn]) -> str:
    """The question plus the topic words of the most recent earlier user turn(s) when needed."""
    earlier = [t.text for t in history if t.speaker == "user"]
    if not earlier or not needs_context(question):
        return question
    own = set(content_words(question))
    carried: list[str] = []
    for text in reversed(earlier[-2:]):
        for w in content_words(text):
            if w not in own and w not in carried:
                carried.append(w)
        if len(carried) >= CARRY:
            break
    return f"{question} {' '.join(carried[:CARRY])}".strip()


class RuleRewriter:
    """The rule-based rewrite as a QueryRewriter (what AnswerService falls back to). Never raises."""

    name = "rules"

    def rewrite(self, question: str, history: Sequence[Turn]) -> str:
        return standalone_query(question, history)
