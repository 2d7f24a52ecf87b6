"""Rate limits on questions and ingests, per user and per conversation.

The core decides what is limited and what the asker is told; an adapter stores the counts
(``adapters/ratelimit.py``: Redis, shared by every process, with this module's in-process
limiter as its fallback). Chat adapters call :class:`Throttle` before answering or queueing
and turn :class:`~bot.errors.RateLimited` into :func:`polite_text`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.errors import RateLimited
from bot.ports import RateLimiter


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per ``window_s`` seconds; ``count`` 0 means unlimited."""

    count: int
    window_s: float

    @property
    def unlimited(self) -> bool:
        return self.count <= 0 or self.window_s <= 0


class MemoryRateLimiter:
    """Fixed-window counts in this process's memory (one process; the fallback for Redis).

    Bounded: windows that have ended are dropped when the table grows past ``max_keys``.
    """

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._counts: dict[str, tuple[float, int]] = {}  # key -> (window end, count)
        self._lock = threading.Lock()

    def hit(self, key: str, limit: Limit) -> None:
        if limit.unlimited:
            return
        now = self._clock()
        start = math.floor(now / limit.window_s) * limit.window_s
        end = start + limit.window_s
        slot = f"{key}@{limit.window_s:g}"
        with self._lock:
            current_end, count = self._counts.get(slot, (end, 0))
            if current_end != end:
                count = 0
            count += 1
            if len(self._counts) >= self._max_keys and slot not in self._counts:
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
                if len(self._counts) >= self._max_keys:
                    self._counts.clear()
            self._counts[slot] = (end, count)
        if count > limit.count:
            raise RateLimited(f"more than {limit.count} in {limit.window_s:g}s", retry_after=max(1.0, end - now))


@dataclass(frozen=True)
class RateLimits:
    """The configured limits. Any ``Limit(0, ...)`` is off."""

    questions_per_user: Limit = Limit(20, 60)
    questions_per_conversation: Limit = Limit(60, 60)
    ingests_per_user: Limit = Limit(10, 3600)
    ingests_per_conversation: Limit = Limit(30, 3600)
    votes_per_user: Limit = Limit(30, 3600)
    votes_per_client: Limit = Limit(100, 3600)  # per client address (web) or conversation


class Throttle:
    """Applies :class:`RateLimits` through a :class:`RateLimiter`; keys are ``platform:id``."""

    def __init__(self, limiter: RateLimiter, limits: RateLimits | None = None) -> None:
        self.limiter = limiter
        self.limits = limits or RateLimits()

    def question(self, platform: str, user: str, conversation: str) -> None:
        """Count one question; raises RateLimited when the user or the conversation is over its limit."""
        self._check("q", platform, user, conversation, self.limits.questions_per_user,
                    self.limits.questions_per_conversation)

    def ingest(self, platform: str, user: str, conversation: str) -> None:
        """Count one ingest request; raises RateLimited when over the limit."""
        self._check("ingest", platform, user, conversation, self.limits.ingests_per_user,
                    self.limits.ingests_per_conversation)

    def vote(self, platform: str, user: str, client: str) -> None:
        """Count one vote; raises RateLimited when the voter or its client (address) is over the limit."""
        self._check("vote", platform, user, client, self.limits.votes_per_user, self.limits.votes_per_client)

    def _check(self, kind: str, platform: str, user: str, conversation: str, per_user: Limit,
               per_conversation: Limit) -> None:
        if user:
            self.limiter.hit(f"{kind}:user:{platform}:{user}", per_user)
        if conversation:
            self.limiter.hit(f"{kind}:conv:{platform}:{conversation}", per_conversation)


def polite_text(exc: RateLimited, what: str = "questions") -> str:
    """What the asker is told when limited: why, and when to try again (``bot.messages``)."""
    from bot.messages import too_fast

    return too_fast(exc, what)
