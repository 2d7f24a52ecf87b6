"""Records found by how close a question is to their texts: what the feedback ranker (votes,
matched by the voted query) and the verified ranker (verified answers, matched by their
question and its paraphrases) share.

:class:`SimilarRecords` loads the records from their store at most every ``refresh_s``
seconds (keeping those ``keep`` admits at the time), embeds each text once (the vectors are cached across reloads: a reload embeds only
new texts) and keeps one matrix of them, so a question costs one matrix product. A store that
fails keeps the records loaded before (none before the first load) until the next reload: a
database hiccup must not fail the search.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from bot.ports import Embedder, Matrix, Vector

log = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class Snapshot(Generic[R]):
    """The records of one load and their embedded texts: row ``i`` of ``matrix`` embeds a text
    of ``records[owners[i]]``."""

    records: tuple[R, ...]
    owners: tuple[int, ...]
    matrix: Matrix

    def similarities(self, query_vector: Vector) -> npt.NDArray[np.float32]:
        """Cosine of the query to every row (the vectors are normalised)."""
        if not self.owners:
            return np.zeros(0, dtype=np.float32)
        return self.matrix @ np.asarray(query_vector, dtype=np.float32)



class SimilarRecords(Generic[R]):
    """Records and the embedded texts each is matched by (see the module docstring)."""

    def __init__(
        self,
        load: Callable[[], Sequence[R]],
        texts: Callable[[R], Sequence[str]],
        embedder: Embedder,
        *,
        refresh_s: float,
        what: str,
        keep: Callable[[R], bool] = lambda _: True,
    ) -> None:
        self._load = load
        self._keep = keep
        self._texts = texts
        self._embedder = embedder
        self.refresh_s = refresh_s
        self._what = what
        self._lock = threading.Lock()
        self._loaded_at = -math.inf
        self._snapshot: Snapshot[R] = Snapshot((), (), np.zeros((0, 0), dtype=np.float32))
        self._cache: dict[str, Vector] = {}

    def refresh(self, force: bool = False) -> Snapshot[R]:
        """Reload from the store (at most every ``refresh_s`` seconds unless forced); the current snapshot."""
        now = time.monotonic()
        if not force and now - self._loaded_at < self.refresh_s:
            return self.snapshot
        try:
            records = tuple(self._load())
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not fail the search
            log.warning("%s unavailable (%s); ranking with the ones loaded before", self._what, type(exc).__name__)
            records = self.snapshot.records
        records = tuple(r for r in records if self._keep(r))
        rows = [(i, t) for i, r in enumerate(records) for t in self._texts(r) if t.strip()]
        missing = list(dict.fromkeys(t for _, t in rows if t not in self._cache))
        if missing:
            for t, v in zip(missing, self._embedder.embed_documents(missing), strict=True):
                self._cache[t] = v
        matrix = np.stack([self._cache[t] for _, t in rows]) if rows else np.zeros((0, 0), dtype=np.float32)
        snapshot = Snapshot(records, tuple(i for i, _ in rows), matrix)
        with self._lock:
            self._snapshot, self._loaded_at = snapshot, now
        return snapshot

    @property
    def snapshot(self) -> Snapshot[R]:
        """The records of the last load (without reloading)."""
        with self._lock:
            return self._snapshot
