"""A fake Cohere v2 API: POST /v2/embed and POST /v2/rerank.

Point the real SDK at it with ``cohere.ClientV2(api_key="test-key", base_url=server.url)``.
Embeddings are deterministic bag-of-hashed-words vectors; rerank scores a document by the
share of the query's words it contains (0..1), ties in input order.
"""

from __future__ import annotations

import uuid
from typing import Any

from knowledge.sparse import terms
from tests.fakes.provider_base import BadRequest, FakeServer, Reply, Request, hashed_embedding

INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")


def overlap_score(query: str, document: str) -> float:
    """The share of the query's distinct terms that the document contains."""
    wanted = set(terms(query))
    if not wanted:
        return 0.0
    return len(wanted & set(terms(document))) / len(wanted)


class FakeCohere(FakeServer):
    """Cohere's embed and rerank endpoints, recording every request."""

    def __init__(self, api_key: str | None = "test-key", *, dimension: int = 64) -> None:
        super().__init__(api_key)
        self.dimension = dimension
        self.route("POST", "/v2/embed", self._embed)
        self.route("POST", "/v2/rerank", self._rerank)

    def __enter__(self) -> FakeCohere:
        super().__enter__()
        return self

    def unauthorized(self, request: Request) -> Reply:
        return Reply(401, {"id": str(uuid.uuid4()), "message": "invalid api token"})

    def _embed(self, request: Request, _: dict[str, str]) -> Reply:
        body = request.json
        if not isinstance(body, dict) or not body.get("model"):
            raise BadRequest("model is required")
        if body.get("input_type") not in INPUT_TYPES:
            raise BadRequest(f"invalid input_type {body.get('input_type')!r}")
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or len(texts) > 96:
            raise BadRequest("texts must hold 1..96 strings")
        types = body.get("embedding_types") or ["float"]
        dimension = int(body.get("output_dimension") or self.dimension)
        vectors = [hashed_embedding(t, dimension) for t in texts]
        embeddings: dict[str, Any] = {}
        if "float" in types:
            embeddings["float"] = vectors
        if "int8" in types:
            embeddings["int8"] = [[max(-128, min(127, round(x * 127))) for x in v] for v in vectors]
        return Reply(
            200,
            {
                "id": str(uuid.uuid4()),
                "response_type": "embeddings_by_type",
                "embeddings": embeddings,
                "texts": texts,
                "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": len(texts)}},
            },
        )

    def _rerank(self, request: Request, _: dict[str, str]) -> Reply:
        body = request.json
        if not isinstance(body, dict) or not body.get("model") or not isinstance(body.get("query"), str):
            raise BadRequest("model and query are required")
        documents = body.get("documents")
        if not isinstance(documents, list) or not documents:
            raise BadRequest("documents must be a non-empty list")
        if any(not isinstance(d, str) for d in documents):
            raise BadRequest("documents must be strings")
        scored = sorted(
            ((overlap_score(body["query"], d), i) for i, d in enumerate(documents)),
            key=lambda item: (-item[0], item[1]),
        )
        top_n = body.get("top_n")
        if top_n is not None:
            scored = scored[: int(top_n)]
        return Reply(
            200,
            {
                "id": str(uuid.uuid4()),
                "results": [{"index": i, "relevance_score": s} for s, i in scored],
                "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
            },
        )
