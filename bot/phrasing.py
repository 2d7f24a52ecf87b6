"""How sure the reply sounds: the one place that maps an answer's confidence to its wording.

``Answer.confidence`` is meant as the probability that the answer is correct (calibrated per
knowledge base, bot/calibration.py). A reply at or above ``STATE_AT`` is stated as it is; one
below it opens by saying it *may* answer the question, so a reader checks the source first.
"""

from __future__ import annotations

import re

STATE_AT = 0.7  # at or above: state the answer; below: "This may answer it — see [1]"

_FIRST_CITATION = re.compile(r"\[(\d+)\]")


def hedge(text: str, confidence: float) -> str:
    """``text`` as it should be sent for an answer of this ``confidence``."""
    if confidence >= STATE_AT:
        return text
    first = _FIRST_CITATION.search(text)
    see = f" — see [{first.group(1)}]" if first else ""
    return f"This may answer it{see}.\n\n{text}"
