"""A ChunkIndex on Pinecone (the ``pinecone`` SDK, v5+ API; written against v10).

The Pinecone index must be a dense vector index with the **dotproduct** metric (the one
metric that takes sparse values) and the embedder's dimension. Embedder vectors are
L2-normalised, so a dotproduct score is the cosine ``scores["dense"]`` promises.

Each chunk is one record in the configured namespace:
- id: the chunk id (ids Pinecone refuses — non-ASCII or over 512 characters — become
  ``h:<sha256>``; the real id is always in the metadata);
- values: the embedder's vector; sparse values: ``knowledge.sparse`` of the chunk's
  context (title, headings) and text, for keyword search;
- metadata: chunk_id, doc_id, ordinal, text, title, heading_path, url, source,
  content_hash, access (list), updated_at (epoch seconds; absent when unknown, since
  Pinecone has no null), and rev (see ``replace``).

Keyword search is Pinecone's sparse-dense query with the dense part weighted down to
nothing. Why not a sparse-only query: the SDK (API 2026-07) accepts one, but on a *dense*
index (which a hybrid index is) the service has refused queries without a dense vector
(see run-llama/llama_index#12967), and Pinecone refuses all-zero dense vectors. So the
query carries a constant dense vector of norm ``DENSE_EPSILON`` (1e-6): its dot product
with any unit vector is at most 1e-6, while one shared term scores above 0.05 even in a
3,000-word chunk, so ranking is by the sparse part alone; records sharing no term with
the query (score <= 2e-6) are dropped.

Filters are Pinecone metadata filters, applied inside the index before ranking:
``{"access": {"$in": groups}}`` (matches when the chunk's access list shares a group),
``{"source": {"$in": sources}}``, ``{"updated_at": {"$gte"/"$lte": epoch}}``.

Limits, by the nature of the service: Pinecone has no transactions, so while ``replace``
runs a query can see a document's old and new chunks together (never neither); and
Pinecone is eventually consistent, so a write may take a moment to show in queries and in
``count``. ``delete`` and ``replace`` use delete-by-metadata-filter (serverless indexes
support it since 2025; pod indexes always have).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NoReturn

import numpy as np
from pinecone import Index, Pinecone
from pinecone.errors.exceptions import (
    ApiError,
    ForbiddenError,
    PineconeConnectionError,
    PineconeError,
    PineconeTimeoutError,
    PineconeTypeError,
    PineconeValueError,
    RateLimitError,
    ResponseParsingError,
    ServiceError,
    UnauthorizedError,
)

from bot.errors import ConfigError, ProviderError, ProviderRejected, ProviderUnavailable
from bot.ports import Matrix, Vector
from bot.types import Chunk, ScoredChunk, SearchFilters, chunk_to_dict
from knowledge.sparse import SparseEncoder

log = logging.getLogger(__name__)

UPSERT_BATCH = 100  # records per upsert request (Pinecone caps requests at 2 MB / 1000 records)
DELETE_BATCH = 100  # doc ids per delete-by-filter request
MAX_TOP_K = 10_000
DENSE_EPSILON = 1e-6
METADATA_FIELDS = ("chunk_id", "doc_id", "text", "title", "url", "source", "content_hash")


def pinecone_client(
    api_key: str | None,
    host: str | None = None,
    timeout: float = 20.0,
    *,
    control_host: str | None = None,
) -> Index | Pinecone:
    """A Pinecone client, without network calls: with ``host`` (the index's own host) the
    data-plane ``pinecone.Index`` itself; otherwise the control-plane ``Pinecone`` client
    (``control_host`` overrides its address), from which ``PineconeIndex`` resolves its
    ``index_name`` to a host with one describe call on first use."""
    if not api_key:
        raise ConfigError("Pinecone needs PINECONE_API_KEY")
    try:
        if host:
            return Index(host=host, api_key=api_key, timeout=timeout)
        return Pinecone(api_key=api_key, host=control_host, timeout=timeout)
    except PineconeError as exc:  # e.g. a host that is not a URL
        raise ConfigError(f"Pinecone client settings are invalid: {exc}") from None


def map_pinecone_error(exc: BaseException, what: str) -> ProviderError:
    """The supportbot error for a Pinecone SDK exception; ``what`` names the call."""
    if isinstance(exc, PineconeTimeoutError):
        return ProviderUnavailable(f"Pinecone {what} timed out")
    if isinstance(exc, PineconeConnectionError):
        return ProviderUnavailable(f"Pinecone {what}: could not connect to the index host")
    if isinstance(exc, RateLimitError):
        hint = f"; retry after {exc.retry_after:g}s" if getattr(exc, "retry_after", None) is not None else ""
        return ProviderUnavailable(f"Pinecone {what} was rate limited (HTTP 429){hint}")
    if isinstance(exc, ServiceError):
        return ProviderUnavailable(f"Pinecone {what} failed on the server (HTTP {exc.status_code})")
    if isinstance(exc, UnauthorizedError | ForbiddenError):
        return ProviderRejected(f"Pinecone {what} was refused: check the API key (HTTP {exc.status_code})")
    if isinstance(exc, ApiError):
        status = exc.status_code
        if status in (408, 409):
            return ProviderUnavailable(f"Pinecone {what} failed (HTTP {status})")
        # The server's message says what was wrong with the request (dimension, filter, ...);
        # it never contains the key, which only travels in a header.
        message = " ".join(str(exc.message).split())[:200]
        return ProviderRejected(f"Pinecone {what} was rejected (HTTP {status}): {message}")
    if isinstance(exc, ResponseParsingError):
        return ProviderRejected(f"Pinecone {what}: the server's reply was malformed")
    if isinstance(exc, PineconeValueError | PineconeTypeError):
        return ProviderRejected(f"Pinecone {what}: invalid request ({exc})")
    return ProviderRejected(f"Pinecone {what} failed: {type(exc).__name__}")


def _raise_mapped(exc: BaseException, what: str) -> NoReturn:
    mapped = map_pinecone_error(exc, what)
    if isinstance(exc, PineconeTimeoutError | PineconeConnectionError):
        raise mapped from exc  # names the host, never the key (it travels in a header)
    raise mapped from None  # keep response bodies and headers out of our errors


def record_id(chunk_id: str) -> str:
    """The Pinecone record id for a chunk id (ASCII, at most 512 characters, no NUL)."""
    if chunk_id and chunk_id.isascii() and len(chunk_id) <= 512 and "\x00" not in chunk_id:
        return chunk_id
    return "h:" + hashlib.sha256(chunk_id.encode("utf-8")).hexdigest()


def chunk_metadata(chunk: Chunk, rev: str) -> dict[str, Any]:
    """The Pinecone metadata for ``chunk`` (strings, numbers and lists of strings only)."""
    metadata: dict[str, Any] = chunk_to_dict(chunk)
    # Pinecone keeps its own "id" and refuses null values; filters need updated_at as epoch seconds.
    metadata["chunk_id"] = metadata.pop("id")
    metadata["rev"] = rev
    del metadata["updated_at"]
    if chunk.updated_at is not None:
        metadata["updated_at"] = _epoch(chunk.updated_at)
    return metadata


def chunk_from_metadata(metadata: Mapping[str, Any]) -> Chunk | None:
    """The chunk stored in ``metadata``; None for records this adapter did not write."""
    if any(not isinstance(metadata.get(name), str) for name in METADATA_FIELDS):
        return None
    updated = metadata.get("updated_at")
    return Chunk(
        id=metadata["chunk_id"],
        doc_id=metadata["doc_id"],
        ordinal=int(metadata.get("ordinal", 0)),
        text=metadata["text"],
        title=metadata["title"],
        heading_path=tuple(str(h) for h in metadata.get("heading_path") or ()),
        url=metadata["url"],
        source=metadata["source"],
        content_hash=metadata["content_hash"],
        updated_at=None if updated is None else datetime.fromtimestamp(float(updated), UTC),
        access=tuple(str(a) for a in metadata.get("access") or ()),
        fingerprint=str(metadata.get("fingerprint") or ""),
    )


def _epoch(moment: datetime) -> float:
    # Naive datetimes are taken as UTC, the way the rest of supportbot stores them.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def pinecone_filter(filters: SearchFilters) -> dict[str, Any] | None:
    """The Pinecone metadata filter for ``filters`` (None: no restriction).

    Callers handle empty ``groups``/``sources`` (nothing visible) before asking: Pinecone
    refuses an empty ``$in``.
    """
    clauses: list[dict[str, Any]] = []
    if filters.groups is not None:
        clauses.append({"access": {"$in": sorted(filters.groups)}})
    if filters.sources is not None:
        clauses.append({"source": {"$in": sorted(filters.sources)}})
    if filters.updated_after is not None:
        clauses.append({"updated_at": {"$gte": _epoch(filters.updated_after)}})
    if filters.updated_before is not None:
        clauses.append({"updated_at": {"$lte": _epoch(filters.updated_before)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _revision(doc_id: str, chunks: Sequence[Chunk], vectors: Matrix) -> str:
    """A digest of everything ``replace`` writes: equal for a repeated call (idempotent)."""
    digest = hashlib.sha256(doc_id.encode("utf-8"))
    for chunk in chunks:
        digest.update(json.dumps(chunk_metadata(chunk, ""), sort_keys=True).encode("utf-8"))
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()[:32]


class PineconeIndex:
    """Chunks in a Pinecone dotproduct index (ChunkIndex protocol): dense search, keyword
    search through sparse-dense hybrid queries, and access filters inside the index.

    ``client`` is what ``pinecone_client`` returns: a data-plane ``pinecone.Index``, or a
    control-plane ``pinecone.Pinecone`` with ``index_name`` to look its host up on first
    use; a zero-argument factory returning an ``Index`` works too. The constructor makes
    no network call.
    """

    def __init__(
        self,
        client: Index | Pinecone | Callable[[], Index],
        *,
        index_name: str | None = None,
        namespace: str = "default",
        dimension: int | None = None,
        sparse_encoder: SparseEncoder | None = None,
        upsert_batch: int = UPSERT_BATCH,
    ) -> None:
        if isinstance(client, Pinecone) and not index_name:
            raise ConfigError("PineconeIndex needs index_name (SUPPORTBOT_PINECONE_INDEX) or an index host")
        self._source = client
        self._index_name = index_name
        self._index: Index | None = None
        self._owned = False
        self._lock = threading.Lock()
        self.namespace = namespace
        self._dimension = dimension
        self._sparse = sparse_encoder or SparseEncoder()
        self._upsert_batch = max(1, min(upsert_batch, 1000))
        where = index_name or (client.host if isinstance(client, Index) else "pinecone")
        self.name = f"pinecone:{where}/{namespace}:{self._sparse.version}"

    # -- plumbing ---------------------------------------------------------------------------------
    def _client(self) -> Index:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    source = self._source
                    if isinstance(source, Index):
                        self._index = source
                    elif isinstance(source, Pinecone):
                        assert self._index_name is not None
                        try:
                            self._index = source.index(name=self._index_name)
                        except PineconeError as exc:
                            _raise_mapped(exc, f"looking up index {self._index_name!r}")
                        self._owned = True
                    else:
                        self._index = source()
                        self._owned = True
        return self._index

    def _dimension_of_index(self) -> int:
        if self._dimension is None:
            try:
                stats = self._client().describe_index_stats()
            except PineconeError as exc:
                _raise_mapped(exc, "describe_index_stats")
            if not stats.dimension:
                raise ConfigError(
                    "Pinecone: the index reports no dense dimension; create it with dimension=..."
                )
            self._dimension = int(stats.dimension)
        return self._dimension

    def close(self) -> None:
        """Close the data-plane client if this object built it (a client passed in, and the
        control-plane client, belong to the caller)."""
        with self._lock:
            if self._index is not None and self._owned:
                self._index.close()
                self._index = None
                self._owned = False

    # -- writes -----------------------------------------------------------------------------------
    def replace(self, doc_id: str, chunks: Sequence[Chunk], vectors: Matrix) -> None:
        """Upsert the new chunks (tagged with this revision), then delete the document's
        records of any other revision. Repeating a call changes nothing."""
        if len(chunks) != len(vectors):
            raise ValueError(f"replace({doc_id!r}): {len(chunks)} chunks but {len(vectors)} vectors")
        if any(chunk.doc_id != doc_id for chunk in chunks):
            raise ValueError(f"replace({doc_id!r}): every chunk must belong to that document")
        if not chunks:
            self.delete([doc_id])
            return
        matrix = np.asarray(vectors, dtype=np.float32)
        if not np.isfinite(matrix).all() or (np.linalg.norm(matrix, axis=1) == 0).any():
            raise ValueError(f"replace({doc_id!r}): vectors must be finite and non-zero")
        if self._dimension is None:
            self._dimension = int(matrix.shape[1])
        rev = _revision(doc_id, chunks, matrix)
        records = []
        for chunk, vector in zip(chunks, matrix, strict=True):
            sparse = self._sparse.encode_document(chunk.text, chunk.context)
            record: dict[str, Any] = {
                "id": record_id(chunk.id),
                "values": [float(x) for x in vector],
                "metadata": chunk_metadata(chunk, rev),
            }
            if len(sparse):
                record["sparse_values"] = sparse.as_dict()
            records.append(record)
        client = self._client()
        try:
            for start in range(0, len(records), self._upsert_batch):
                client.upsert(vectors=records[start : start + self._upsert_batch], namespace=self.namespace)
            client.delete(
                filter={"$and": [{"doc_id": {"$eq": doc_id}}, {"rev": {"$ne": rev}}]},
                namespace=self.namespace,
            )
        except PineconeError as exc:
            _raise_mapped(exc, f"replace({doc_id!r})")

    def delete(self, doc_ids: Sequence[str]) -> None:
        ids = sorted(set(doc_ids))
        client = self._client()
        try:
            for start in range(0, len(ids), DELETE_BATCH):
                batch = ids[start : start + DELETE_BATCH]
                client.delete(filter={"doc_id": {"$in": batch}}, namespace=self.namespace)
        except PineconeError as exc:
            _raise_mapped(exc, "delete")

    # -- searches ---------------------------------------------------------------------------------
    @staticmethod
    def _nothing_visible(filters: SearchFilters) -> bool:
        return (filters.groups is not None and not filters.groups) or (
            filters.sources is not None and not filters.sources
        )

    def _query(self, what: str, k: int, filters: SearchFilters, **kwargs: Any) -> list[tuple[Chunk, float]]:
        try:
            response = self._client().query(
                top_k=min(k, MAX_TOP_K),
                namespace=self.namespace,
                filter=pinecone_filter(filters),
                include_metadata=True,
                **kwargs,
            )
            matches = list(response.matches)
        except PineconeError as exc:
            _raise_mapped(exc, what)
        hits: list[tuple[Chunk, float]] = []
        for match in matches:
            chunk = chunk_from_metadata(match.metadata or {})
            if chunk is None:
                log.warning("Pinecone record %r has no supportbot metadata: skipped", match.id)
                continue
            if not filters.allows(chunk):  # the index filtered already; this guards against drift
                continue
            hits.append((chunk, float(match.score)))
        return hits

    def dense_search(self, vector: Vector, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        if k <= 0 or self._nothing_visible(filters):
            return []
        query = [float(x) for x in np.asarray(vector, dtype=np.float32).ravel()]
        if self._dimension is None:
            self._dimension = len(query)
        hits = self._query("dense search", k, filters, vector=query)
        return [ScoredChunk(chunk, score, MappingProxyType({"dense": score})) for chunk, score in hits]

    def keyword_search(self, query: str, k: int, filters: SearchFilters) -> list[ScoredChunk]:
        sparse = self._sparse.encode_query(query)
        if k <= 0 or not len(sparse) or self._nothing_visible(filters):
            return []
        dimension = self._dimension_of_index()
        # See the module docstring: a dense vector is mandatory, zero is refused, so a
        # constant one of norm DENSE_EPSILON stands in for "no dense part".
        tiny = [DENSE_EPSILON / dimension**0.5] * dimension
        hits = self._query("keyword search", k, filters, vector=tiny, sparse_vector=sparse.as_dict())
        return [
            ScoredChunk(chunk, score, MappingProxyType({"keyword": score}))
            for chunk, score in hits
            if score > 2 * DENSE_EPSILON
        ]

    def count(self) -> int:
        try:
            stats = self._client().describe_index_stats()
        except PineconeError as exc:
            _raise_mapped(exc, "describe_index_stats")
        if self._dimension is None and stats.dimension:
            self._dimension = int(stats.dimension)
        summary = stats.namespaces.get(self.namespace or "__default__")
        return int(summary.vector_count) if summary is not None else 0
