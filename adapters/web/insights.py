"""Knowledge gaps: declined questions grouped by meaning."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from bot.ports import Embedder

GAP_SIMILARITY = 0.8


@dataclass
class Gap:
    """Declined questions that ask about the same thing; ``question`` is the first (newest) one."""

    question: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    answer_ids: list[str] = field(default_factory=list)
    last_asked: datetime | None = None


def group_questions(
    declined: Sequence[tuple[str, str, datetime]],
    embedder: Embedder,
    threshold: float = GAP_SIMILARITY,
    max_examples: int = 5,
) -> list[Gap]:
    """Group (answer id, question, asked at) rows greedily, in order: each question joins the group
    whose first question is the most similar, if that is at least ``threshold`` (cosine), else
    starts a group.
    Groups come back largest first (ties: most recently asked first)."""
    if not declined:
        return []
    texts = [q for _, q, _ in declined]
    vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
    heads: list[int] = []
    groups: list[Gap] = []
    for i, (answer_id, text, asked) in enumerate(declined):
        target: Gap | None = None
        if heads:
            sims = vectors[heads] @ vectors[i]
            best = int(np.argmax(sims))
            if float(sims[best]) >= threshold:
                target = groups[best]
        if target is None:
            heads.append(i)
            target = Gap(question=text)
            groups.append(target)
        target.count += 1
        target.answer_ids.append(answer_id)
        if text not in target.examples and len(target.examples) < max_examples:
            target.examples.append(text)
        if target.last_asked is None or asked > target.last_asked:
            target.last_asked = asked
    return sorted(groups, key=lambda g: (-g.count, -(g.last_asked.timestamp() if g.last_asked else 0)))
