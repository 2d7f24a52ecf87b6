"""Progress of a long ingest that a person can follow: totals, rate, ETA and the current file.

One :class:`IngestProgress` is shared by the file walk (which counts the files up front and
names the current one) and the :class:`knowledge.pipeline.Ingestor` (which counts the chunks
found and embedded). Readers (the CLI's progress bar, a worker writing job progress) only read
it. It is updated from one thread at a time; readers may see a slightly stale value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class IngestProgress:
    """Counts of one ingest; ``files_total`` is None until the files have been counted."""

    files_total: int | None = None
    files_done: int = 0
    current: str = ""
    chunks_found: int = 0  # chunks of new and changed documents (the ones to embed)
    chunks_embedded: int = 0
    started: float = field(default_factory=time.monotonic)

    def file(self, path: str) -> None:
        """A file is being read now."""
        self.files_done += 1
        self.current = path

    def elapsed_s(self) -> float:
        return max(time.monotonic() - self.started, 1e-6)

    def chunks_per_s(self) -> float:
        """Chunks embedded per second so far (the step that takes the time)."""
        return self.chunks_embedded / self.elapsed_s()

    def files_per_s(self) -> float:
        return self.files_done / self.elapsed_s()

    def chunks_expected(self) -> int | None:
        """Chunks to embed in all: those found so far, extrapolated over the files not read yet."""
        if self.files_total is None or self.files_done == 0:
            return None
        if self.files_done >= self.files_total:
            return self.chunks_found
        return round(self.chunks_found * self.files_total / self.files_done)

    def eta_s(self) -> float | None:
        """Seconds left, from the embedding rate (or the file rate while nothing needed embedding)."""
        expected = self.chunks_expected()
        if expected is None or self.files_total is None:
            return None
        files_left = max(self.files_total - self.files_done, 0)
        chunks_left = max(expected - self.chunks_embedded, 0)
        if chunks_left and self.chunks_embedded:
            return chunks_left / self.chunks_per_s()
        if chunks_left:
            return None  # nothing embedded yet: no rate to go by
        return files_left / self.files_per_s() if self.files_done else None
