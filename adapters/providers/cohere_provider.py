"""Cohere (v2 API, ``cohere.ClientV2``): an Embedder and a Reranker.

Both take a ``cohere.ClientV2`` or a zero-argument factory that builds one on first use
(constructors have no side effects); ``cohere_client`` builds one from the settings, and
``base_url`` aims it at a proxy or a fake server. SDK errors become ``ProviderUnavailable``
(timeouts, connection errors, 408/409/429, 5xx) or ``ProviderRejected`` (other 4xx,
malformed replies). Messages carry the status only, never the key or the server's text.

Retries: the SDK retries 408/409/429/5xx and connection errors itself (``max_retries``);
pass ``max_retries=0`` to ``cohere_client`` when the caller owns retries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, NoReturn, cast

import cohere
import httpx
import numpy as np
import numpy.typing as npt
from cohere.core.api_error import ApiError
from cohere.core.parse_error import ParsingError

from adapters.providers.lazy import LazyClient
from bot.errors import ConfigError, ProviderError, ProviderRejected, ProviderUnavailable
from bot.ports import Matrix, Vector
from bot.types import Chunk, ScoredChunk

KNOWN_DIMENSIONS = {
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
    "embed-multilingual-light-v3.0": 384,
    "embed-v4.0": 1536,
}
MAX_BATCH = 96  # texts per embed request (the API's limit)
EMPTY_TEXT = "(empty)"


def cohere_client(
    api_key: str | None,
    base_url: str | None = None,
    timeout: float = 20.0,
    *,
    max_retries: int = 2,
) -> cohere.ClientV2:
    """A ``cohere.ClientV2``. ``base_url`` (e.g. ``http://127.0.0.1:PORT``) replaces the public API."""
    if not api_key:
        raise ConfigError("Cohere needs COHERE_API_KEY")
    return cohere.ClientV2(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        log_warning_experimental_features=False,
    )


def passage_text(chunk: Chunk) -> str:
    """What a reranker reads: the chunk's title and heading path, then its text."""
    return f"{chunk.context}\n{chunk.text}" if chunk.context else chunk.text


def _lazy(client: cohere.ClientV2 | Callable[[], cohere.ClientV2]) -> LazyClient[cohere.ClientV2]:
    # ClientV2 closes its httpx client on exit.
    return LazyClient(client, cohere.ClientV2, lambda c: cast(Any, c).__exit__(None, None, None))


def map_cohere_error(exc: BaseException, what: str) -> ProviderError:
    """The supportbot error for a Cohere SDK (or httpx) exception; ``what`` names the call."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderUnavailable(f"Cohere {what} timed out")
    if isinstance(exc, httpx.TransportError):
        return ProviderUnavailable(f"Cohere {what}: could not connect to the server")
    if isinstance(exc, ParsingError):
        return ProviderRejected(f"Cohere {what}: the server's reply was malformed")
    if isinstance(exc, ApiError):
        status = exc.status_code or 0
        if 200 <= status < 300:  # the SDK reports an unparseable 2xx body as ApiError
            return ProviderRejected(f"Cohere {what}: the server's reply was malformed")
        if status == 429:
            retry_after = (exc.headers or {}).get("retry-after", "")
            hint = f"; retry after {retry_after}s" if retry_after.replace(".", "", 1).isdigit() else ""
            return ProviderUnavailable(f"Cohere {what} was rate limited (HTTP 429){hint}")
        if status >= 500 or status in (408, 409):
            return ProviderUnavailable(f"Cohere {what} failed on the server (HTTP {status})")
        if status in (401, 403, 498):
            return ProviderRejected(f"Cohere {what} was refused: check the API key (HTTP {status})")
        return ProviderRejected(f"Cohere {what} was rejected (HTTP {status})")
    return ProviderRejected(f"Cohere {what} failed: {type(exc).__name__}")


def _raise_mapped(exc: BaseException, what: str) -> NoReturn:
    mapped = map_cohere_error(exc, what)
    if isinstance(exc, httpx.TransportError):
        raise mapped from exc  # names the host, never the key
    raise mapped from None  # ApiError's text holds the response headers and body: keep it out


_SDK_ERRORS = (ApiError, ParsingError, httpx.HTTPError)
_MALFORMED = (AttributeError, TypeError, ValueError, KeyError, IndexError)


def _l2_normalise(matrix: npt.NDArray[Any]) -> Matrix:
    rows = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: Matrix = (rows / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
    return out


class CohereEmbedder:
    """Embeds with Cohere's embed API (Embedder protocol): ``search_document`` for passages,
    ``search_query`` for questions, float vectors, L2-normalised, 96 texts a request."""

    def __init__(
        self,
        client: cohere.ClientV2 | Callable[[], cohere.ClientV2],
        model: str = "embed-english-v3.0",
        *,
        dimension: int | None = None,
        batch_size: int = MAX_BATCH,
    ) -> None:
        self._client = _lazy(client)
        self.model = model
        self._output_dimension = dimension
        self._dimension = dimension or KNOWN_DIMENSIONS.get(model)
        self._batch_size = max(1, min(batch_size, MAX_BATCH))
        self.name = f"cohere:{model}" + (f":{dimension}" if dimension else "")

    def close(self) -> None:
        """Close the SDK client if it was built here from a factory."""
        self._client.close()

    @property
    def dimension(self) -> int:
        """Known for Cohere's models; for others, found with one probe request on first use."""
        if self._dimension is None:
            self._dimension = int(self._embed(["dimension probe"], "search_document").shape[1])
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._embed(texts, "search_document")

    def prepare(self) -> None:
        """Nothing to prepare: the model is remote."""

    def embed_query(self, text: str) -> Vector:
        vector: Vector = self._embed([text], "search_query")[0]
        return vector

    def _embed(self, texts: Sequence[str], input_type: str) -> Matrix:
        items = [t if t.strip() else EMPTY_TEXT for t in texts]
        rows = [
            self._embed_batch(items[i : i + self._batch_size], input_type)
            for i in range(0, len(items), self._batch_size)
        ]
        matrix = _l2_normalise(np.vstack(rows))
        if self._dimension is None:
            self._dimension = int(matrix.shape[1])
        return matrix

    def _embed_batch(self, batch: list[str], input_type: str) -> Matrix:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "input_type": input_type,
            "texts": batch,
            "embedding_types": ["float"],
            "truncate": "END",
        }
        if self._output_dimension and self.model.startswith("embed-v4"):
            kwargs["output_dimension"] = self._output_dimension
        try:
            response = self._client.get().embed(**kwargs)
            vectors = response.embeddings.float_
        except _SDK_ERRORS as exc:
            _raise_mapped(exc, "embed")
        except _MALFORMED:
            raise ProviderRejected("Cohere embed: the server's reply was malformed") from None
        if not isinstance(vectors, list) or len(vectors) != len(batch):
            raise ProviderRejected("Cohere embed: the reply does not hold one float vector per text")
        try:
            matrix = np.asarray(vectors, dtype=np.float32)
        except ValueError:
            raise ProviderRejected("Cohere embed: the reply's vectors differ in length") from None
        if matrix.ndim != 2 or (self._dimension is not None and matrix.shape[1] != self._dimension):
            raise ProviderRejected(
                f"Cohere embed: expected dimension {self._dimension}, got {matrix.shape[-1]}"
            )
        return matrix


class CohereReranker:
    """Reorders passages with Cohere's rerank API (Reranker protocol).

    Each passage is sent as its title and heading path followed by its text. Returns at
    most ``top_k`` of the given passages, best first, with ``scores["rerank"]`` (Cohere's
    relevance score, 0..1) added to the scores they already had, and ``score`` equal to it.
    """

    def __init__(
        self,
        client: cohere.ClientV2 | Callable[[], cohere.ClientV2],
        model: str = "rerank-v3.5",
        *,
        max_tokens_per_doc: int | None = None,
    ) -> None:
        self._client = _lazy(client)
        self.model = model
        self._max_tokens_per_doc = max_tokens_per_doc
        self.name = f"cohere:{model}"

    def close(self) -> None:
        """Close the SDK client if it was built here from a factory."""
        self._client.close()

    def rerank(self, query: str, passages: Sequence[ScoredChunk], top_k: int) -> list[ScoredChunk]:
        if not passages or top_k <= 0:
            return []
        kwargs: dict[str, Any] = {
            "model": self.model,
            "query": query,
            "documents": [passage_text(p.chunk) for p in passages],
            "top_n": min(top_k, len(passages)),
        }
        if self._max_tokens_per_doc:
            kwargs["max_tokens_per_doc"] = self._max_tokens_per_doc
        try:
            response = self._client.get().rerank(**kwargs)
            results = [(int(r.index), float(r.relevance_score)) for r in response.results]
        except _SDK_ERRORS as exc:
            _raise_mapped(exc, "rerank")
        except _MALFORMED:
            raise ProviderRejected("Cohere rerank: the server's reply was malformed") from None
        seen: set[int] = set()
        ranked: list[tuple[float, int]] = []
        for index, score in results:
            if not 0 <= index < len(passages) or index in seen or score != score:  # NaN check
                raise ProviderRejected("Cohere rerank: the reply names a passage that was not sent")
            seen.add(index)
            ranked.append((score, index))
        # Cohere returns best first; sort anyway (stable, ties keep the input order).
        ranked.sort(key=lambda item: (-item[0], item[1]))
        out: list[ScoredChunk] = []
        for score, index in ranked[:top_k]:
            passage = passages[index]
            scores = MappingProxyType({**passage.scores, "rerank": score})
            out.append(ScoredChunk(chunk=passage.chunk, score=score, scores=scores))
        return out
