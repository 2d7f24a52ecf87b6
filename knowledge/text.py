"""Moved to :mod:`bot.text` (the core owns the text helpers; ``knowledge`` imports them from there).

Kept only so code written against the old path keeps importing until it is updated; new code
imports ``bot.text``.
"""

from __future__ import annotations

from bot.text import STOPWORDS, WORD, content_words, words

__all__ = ["STOPWORDS", "WORD", "content_words", "words"]
