"""The offline default index: vector search over a float32 matrix plus in-memory BM25.

- :mod:`.index`: :class:`LocalIndex`, the façade (ChunkIndex, ChunkLookup, CandidateScorer); it
  loads the rest on its first call, so building one costs nothing
- :mod:`.memory`: the loaded index: connections, the in-memory matrix and postings, searches
- :mod:`.store`: the SQLite file (schema, migration, rows, vocabulary)
- :mod:`.tokenizer`: SQLite FTS5's tokenizer for keywords
- :mod:`.postings`: the inverted index and BM25
- :mod:`.dense`: the matrix's sign-bit prefilter and helpers

Measurements behind the parameters: docs/measurements.md.
"""

from adapters.providers.local_index.index import LocalIndex

__all__ = ["LocalIndex"]
