"""Votes that improve ranking: passages cited in 👍 answers gain, and passages cited in 👎 answers
lose, weight for similar future questions.

Safety rules, each enforced here:
- Only questions similar to the voted one are affected (cosine of the query vectors at least
  ``min_similarity``), weighted by how similar they are.
- Bounded: one vote moves a passage by at most ``per_vote`` and all votes together by at
  most ``max_boost``, on the fused score scale (0..1) — one 👎 reorders, it never hides.
- Decaying: a vote's weight halves every ``half_life_days``.
- Never across access scopes: a vote counts for a viewer only when the voter's access
  groups are a subset of the viewer's, so a vote cast in a private channel cannot shift
  what a public channel sees; and only passages the viewer's filter already admitted are
  touched (boosting happens after the index filtered by access).
- One voter's weight on a passage is bounded: everything one voter cast on a passage (over
  every similar question) adds up to at most ``per_voter``. Web visitors are anonymous (a new
  cookie is a new visitor, for free), so all anonymous votes count as ONE voter: fifty
  anonymous 👎 move a passage no further than one (``ANONYMOUS_VOTER``).
- Anonymous votes stay on the web: they count only for viewers in the web chat, unless an
  admin confirmed them in the review queue (``VoteRecord.confirmed``); then they count on
  every platform (still as the one anonymous voter). Votes of identified voters — Slack and
  Teams users, the signed-in web admin — count on every platform.
- Switched off with ``enabled=False`` (setting ``SUPPORTBOT_FEEDBACK_RANKING=false``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

import numpy as np

from bot.ports import Embedder, Vector
from bot.similar import SimilarRecords
from bot.types import ScoredChunk

WEB = "web"
WEB_ADMIN_VOTER = "web:admin"  # the signed-in admin of the web pages: an identified voter
ANONYMOUS_VOTER = "web:anonymous"  # every other web visitor, counted together


@dataclass(frozen=True)
class VoteRecord:
    """One stored vote with what it voted on: the searched query and the cited chunks.

    ``voter`` is the stored user id (``slack:U…``/``U…``, ``teams:…``, ``web:<visitor>``,
    ``web:admin``), ``platform`` where the vote was cast; ``confirmed`` when an admin confirmed
    the votes on that answer in the review queue. A record without a ``voter`` is a voter of its own.
    """

    query: str
    chunk_ids: tuple[str, ...]
    up: bool
    at: datetime
    groups: frozenset[str]
    voter: str = ""
    platform: str = ""
    confirmed: bool = False

    @property
    def anonymous(self) -> bool:
        """Cast by a web visitor nobody identified (not the signed-in admin)."""
        return self.platform == WEB and self.voter != WEB_ADMIN_VOTER

    def counts_for(self, viewer_platform: str | None) -> bool:
        """Whether this vote may move what a viewer on ``viewer_platform`` sees."""
        return not self.anonymous or self.confirmed or viewer_platform == WEB


@dataclass(frozen=True)
class FeedbackConfig:
    enabled: bool = True
    min_similarity: float = 0.5
    per_vote: float = 0.12
    per_voter: float = 0.12  # one voter's total on one passage (all anonymous web visitors: one voter)
    max_boost: float = 0.3
    half_life_days: float = 90.0
    refresh_s: float = 5.0


class FeedbackRanker:
    """Adjusts fused scores with the votes of similar earlier questions."""

    def __init__(
        self,
        votes: Callable[[], Sequence[VoteRecord]],
        embedder: Embedder,
        config: FeedbackConfig | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config or FeedbackConfig()
        self._clock = clock
        self._votes: SimilarRecords[VoteRecord] = SimilarRecords(
            votes, lambda r: (r.query,), embedder, refresh_s=self.config.refresh_s, what="votes"
        )

    def refresh(self, force: bool = False) -> None:
        """Reload votes from the store (at most every ``refresh_s`` seconds unless forced)."""
        self._votes.refresh(force)

    def boosts(
        self, query_vector: Vector, viewer_groups: frozenset[str] | None, viewer_platform: str | None = None
    ) -> dict[str, float]:
        """The score change per chunk id for a query (empty when nothing similar was voted on).

        ``viewer_platform`` is where the viewer asks (``"web"``, ``"slack"``, …): anonymous web
        votes count only for ``"web"`` unless confirmed by an admin.
        """
        if not self.config.enabled:
            return {}
        snapshot = self._votes.refresh()
        if not snapshot.owners:
            return {}
        sims = snapshot.similarities(query_vector)
        now = self._clock()
        c = self.config
        per_voter: dict[tuple[str, str], float] = {}  # (voter, chunk id) -> that voter's sum
        for i in np.flatnonzero(sims >= c.min_similarity):
            r = snapshot.records[snapshot.owners[int(i)]]
            if viewer_groups is not None and not r.groups <= viewer_groups:
                continue
            if not r.counts_for(viewer_platform):
                continue
            voter = ANONYMOUS_VOTER if r.anonymous else (r.voter or f"#{int(i)}")
            age_days = max(0.0, (now - r.at).total_seconds() / 86400)
            # Weight rises from 0 at the similarity threshold to 1 for the same question.
            closeness = (float(sims[i]) - c.min_similarity) / (1 - c.min_similarity)
            weight = c.per_vote * min(1.0, max(0.0, closeness)) * 0.5 ** (age_days / c.half_life_days)
            for chunk_id in r.chunk_ids:
                key = (voter, chunk_id)
                per_voter[key] = per_voter.get(key, 0.0) + (weight if r.up else -weight)
        total: dict[str, float] = {}
        for (_, chunk_id), value in per_voter.items():
            total[chunk_id] = total.get(chunk_id, 0.0) + max(-c.per_voter, min(c.per_voter, value))
        return {k: max(-c.max_boost, min(c.max_boost, v)) for k, v in total.items() if v}

    def adjust(
        self,
        query_vector: Vector,
        hits: Sequence[ScoredChunk],
        viewer_groups: frozenset[str] | None,
        viewer_platform: str | None = None,
    ) -> list[ScoredChunk]:
        """``hits`` re-scored and re-sorted with the feedback boosts (``scores["feedback"]``)."""
        boosts = self.boosts(query_vector, viewer_groups, viewer_platform)
        if not boosts:
            return list(hits)
        out = []
        for h in hits:
            b = boosts.get(h.chunk.id)
            if b is None:
                out.append(h)
            else:
                out.append(ScoredChunk(h.chunk, h.score + b, MappingProxyType({**h.scores, "feedback": b})))
        out.sort(key=lambda h: -h.score)
        return out
