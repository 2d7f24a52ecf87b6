"""The RateLimiter port on Redis: fixed windows shared by every process.

``INCR`` on ``<prefix><key>:<window start>`` with an expiry of one window: every HTTP
worker, the Socket Mode runner and a restarted process count against the same limit. When
Redis is unreachable the limiter degrades to the in-process :class:`MemoryRateLimiter` (a
limit per process is better than none, and far better than refusing to answer) and logs
that it did, at most once a minute.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from bot.errors import RateLimited
from bot.ratelimit import Limit, MemoryRateLimiter

log = logging.getLogger(__name__)


class RedisRateLimiter:
    """Fixed-window counters in Redis with a local fallback. The client is built on first use."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis_client: Any | None = None,
        prefix: str = "supportbot:rate:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = redis_url
        self._redis = redis_client
        self._prefix = prefix
        self._clock = clock
        self._fallback = MemoryRateLimiter(clock)
        self._lock = threading.Lock()
        self._last_warning = 0.0

    def _client(self) -> Any | None:
        if self._redis is None and self._url:
            with self._lock:
                if self._redis is None:
                    # Short timeouts: a dead Redis must cost a question milliseconds, not seconds.
                    self._redis = redis.Redis.from_url(
                        self._url, socket_connect_timeout=0.5, socket_timeout=0.5
                    )
        return self._redis

    def hit(self, key: str, limit: Limit) -> None:
        if limit.unlimited:
            return
        client = self._client()
        if client is None:
            self._fallback.hit(key, limit)
            return
        now = self._clock()
        start = math.floor(now / limit.window_s) * limit.window_s
        end = start + limit.window_s
        slot = f"{self._prefix}{key}:{limit.window_s:g}:{int(start)}"
        try:
            pipe = client.pipeline(transaction=True)
            pipe.incr(slot)
            pipe.expire(slot, max(1, math.ceil(limit.window_s)) + 1)
            count = int(pipe.execute()[0])
        except (redis.RedisError, OSError) as exc:
            self._degraded(exc)
            self._fallback.hit(key, limit)
            return
        if count > limit.count:
            raise RateLimited(f"more than {limit.count} in {limit.window_s:g}s", retry_after=max(1.0, end - now))

    def _degraded(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            log.warning("Redis unavailable (%s); rate limits are counted per process", type(exc).__name__)
