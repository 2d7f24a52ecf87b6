"""Short-lived Slack state shared across processes: dedup keys, answered threads, ts → answer id.

Slack retries events it thinks were not acknowledged (``X-Slack-Retry-Num``) and sends both
``app_mention`` and ``message`` for one mention; bolt deduplicates neither. Every process
(HTTP workers, the Socket Mode runner, a restarted one) must agree on "already answered",
so the keys live in Redis (``SET NX EX``). When Redis is unreachable the bot keeps
answering: it falls back to an in-process TTL cache (right within one process, which is
the common deployment) and logs that it did, at most once a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger(__name__)

DEDUP_TTL_S = 15 * 60  # Slack gives up retrying after about 5 minutes; keep well past that
THREAD_TTL_S = 30 * 24 * 3600  # a thread stays "ours" (follow-ups answered) for a month
ANSWER_TTL_S = 90 * 24 * 3600  # reactions on answers up to 90 days old still count as votes
_MEMORY_CAP = 100_000


class _TTLCache:
    """A small thread-safe dict with expiry, the fallback when Redis is down."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def set(self, key: str, value: str, ttl: float, *, only_new: bool = False) -> bool:
        now = self._clock()
        with self._lock:
            current = self._items.get(key)
            if only_new and current is not None and current[0] > now:
                return False
            if len(self._items) >= _MEMORY_CAP:
                self._items = {k: v for k, v in self._items.items() if v[0] > now}
                if len(self._items) >= _MEMORY_CAP:  # still full: drop the oldest half
                    keep = sorted(self._items.items(), key=lambda kv: kv[1][0])[_MEMORY_CAP // 2 :]
                    self._items = dict(keep)
            self._items[key] = (now + ttl, value)
            return True

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= self._clock():
                return None
            return item[1]


class SlackState:
    """Dedup claims and small lookups for the Slack adapter, in Redis with a local fallback.

    ``redis_url`` ``None`` means local only (one process). The Redis client is built on
    first use (constructors have no side effects); ``redis_client`` may be given instead.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis_client: Any | None = None,
        prefix: str = "supportbot:slack:",
        dedup_ttl_s: int = DEDUP_TTL_S,
    ) -> None:
        self._url = redis_url
        self._redis = redis_client
        self._prefix = prefix
        self._dedup_ttl = dedup_ttl_s
        self._memory = _TTLCache()
        self._last_warning = 0.0
        self._lock = threading.Lock()

    # -- public API ---------------------------------------------------------------------------
    def claim(self, team: str, channel: str, ts: str) -> bool:
        """True the first time a message (team, channel, ts) is claimed, False for every repeat."""
        key = f"{self._prefix}seen:{team}:{channel}:{ts}"
        return self._set(key, "1", self._dedup_ttl, only_new=True)

    def mark_thread(self, team: str, channel: str, thread_ts: str) -> None:
        """Remember that the bot answered in this thread (so follow-ups need no mention)."""
        self._set(f"{self._prefix}thread:{team}:{channel}:{thread_ts}", "1", THREAD_TTL_S)

    def is_bot_thread(self, team: str, channel: str, thread_ts: str) -> bool:
        """Whether the bot has answered in this thread."""
        return self._get(f"{self._prefix}thread:{team}:{channel}:{thread_ts}") is not None

    def remember_answer(self, channel: str, ts: str, answer_id: str, thread_ts: str = "") -> None:
        """Map a posted bot message to the stored answer it carries (for reaction votes)."""
        self._set(f"{self._prefix}answer:{channel}:{ts}", f"{answer_id} {thread_ts}".strip(), ANSWER_TTL_S)

    def answer_for(self, channel: str, ts: str) -> tuple[str, str] | None:
        """``(answer id, thread ts)`` of the bot message at (channel, ts), if known."""
        value = self._get(f"{self._prefix}answer:{channel}:{ts}")
        if not value:
            return None
        answer_id, _, thread_ts = value.partition(" ")
        return answer_id, thread_ts

    # -- internals ----------------------------------------------------------------------------
    def _client(self) -> Any | None:
        if self._redis is None and self._url:
            with self._lock:
                if self._redis is None:
                    # Short timeouts: a dead Redis must cost an answer milliseconds, not seconds.
                    self._redis = redis.Redis.from_url(
                        self._url, socket_connect_timeout=0.5, socket_timeout=0.5, decode_responses=True
                    )
        return self._redis

    def _degraded(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            log.warning(
                "Redis unavailable (%s); Slack dedup falls back to this process's memory", type(exc).__name__
            )

    def _set(self, key: str, value: str, ttl: int, *, only_new: bool = False) -> bool:
        if only_new and self._memory.get(key) is not None:
            # Claimed here already, maybe while Redis was down (so Redis doesn't know it).
            return False
        client = self._client()
        if client is not None:
            try:
                stored = bool(client.set(key, value, nx=only_new, ex=ttl))
            except (redis.RedisError, OSError) as exc:
                self._degraded(exc)
            else:
                if stored:
                    # Written through, so a Redis outage right after still knows recent keys.
                    self._memory.set(key, value, ttl)
                return stored
        return self._memory.set(key, value, ttl, only_new=only_new)

    def _get(self, key: str) -> str | None:
        client = self._client()
        if client is not None:
            try:
                value = client.get(key)
                return None if value is None else str(value)
            except (redis.RedisError, OSError) as exc:
                self._degraded(exc)
        return self._memory.get(key)
