"""One reusable contract-test class per Protocol in bot/ports.py.

Subclass with a fixture that builds the implementation (offline ones always, cloud ones
against their fake server):

- ``EmbedderContract``: fixture ``embedder``
- ``ChunkIndexContract``: fixtures ``index`` (empty) and ``embedder`` (any Embedder)
- ``RerankerContract``: fixture ``reranker``
- ``GeneratorContract``: fixture ``generator`` (one that can answer from the passages)
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from bot.ports import ChunkIndex, Embedder, Generation, GenerationRequest, Generator, Reranker
from bot.types import PUBLIC, UNRESTRICTED, Chunk, ScoredChunk, SearchFilters

TEXTS = {
    "remote": "To pair the Smart Remote, press and hold the Back and Play buttons for three seconds.",
    "refund": "Enterprise customers can request a refund within 30 days from the billing page.",
    "wifi": "If the TV cannot connect to Wi-Fi, restart the router and check the network password.",
    "secret": "The staff-only escalation phone number for outages is kept in the on-call runbook.",
}


def make_chunk(key: str, *, doc: str | None = None, ordinal: int = 0, access: tuple[str, ...] = (PUBLIC,),
               source: str = "docs", updated: datetime | None = None, text: str | None = None) -> Chunk:
    doc_id = doc or key
    return Chunk(
        id=f"{doc_id}#{ordinal}",
        doc_id=doc_id,
        ordinal=ordinal,
        text=text if text is not None else TEXTS[key],
        title=key.title(),
        heading_path=("Guide", key.title()),
        url=f"https://docs.example.com/{doc_id}",
        source=source,
        content_hash="h-" + doc_id,
        updated_at=updated or datetime(2026, 1, 1, tzinfo=UTC),
        access=access,
    )


class EmbedderContract:
    def test_is_an_embedder(self, embedder: Embedder) -> None:
        assert isinstance(embedder, Embedder)
        assert embedder.name

    def test_shapes_and_normalisation(self, embedder: Embedder) -> None:
        m = embedder.embed_documents([TEXTS["remote"], TEXTS["refund"]])
        assert m.shape == (2, embedder.dimension)
        assert m.dtype == np.float32
        assert np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-3)
        q = embedder.embed_query("how do I pair the remote")
        assert q.shape == (embedder.dimension,)

    def test_empty_input(self, embedder: Embedder) -> None:
        assert embedder.embed_documents([]).shape == (0, embedder.dimension)

    def test_deterministic(self, embedder: Embedder) -> None:
        a = embedder.embed_documents([TEXTS["wifi"]])
        b = embedder.embed_documents([TEXTS["wifi"]])
        assert np.allclose(a, b, atol=1e-5)


class ChunkIndexContract:
    def _fill(self, index: ChunkIndex, embedder: Embedder) -> None:
        chunks = [
            make_chunk("remote"),
            make_chunk("refund", source="billing"),
            make_chunk("wifi", updated=datetime(2025, 1, 1, tzinfo=UTC)),
            make_chunk("secret", access=("staff",)),
        ]
        for c in chunks:
            index.replace(c.doc_id, [c], embedder.embed_documents([c.text]))

    def test_is_an_index(self, index: ChunkIndex) -> None:
        assert isinstance(index, ChunkIndex)

    def test_dense_finds_the_right_chunk(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        hits = index.dense_search(embedder.embed_query("pair the smart remote"), 2, UNRESTRICTED)
        assert hits[0].chunk.doc_id == "remote"
        assert "dense" in hits[0].scores
        assert len(hits) <= 2

    def test_keyword_finds_the_right_chunk(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        hits = index.keyword_search("refund billing enterprise", 3, UNRESTRICTED)
        assert hits and hits[0].chunk.doc_id == "refund"
        assert "keyword" in hits[0].scores

    def test_access_filter_applies_to_both_searches(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        public = SearchFilters()
        q = "staff escalation phone number outages"
        assert all(h.chunk.doc_id != "secret" for h in index.dense_search(embedder.embed_query(q), 10, public))
        assert all(h.chunk.doc_id != "secret" for h in index.keyword_search(q, 10, public))
        staff = SearchFilters(groups=frozenset({"staff"}))
        assert [h.chunk.doc_id for h in index.keyword_search(q, 10, staff)] == ["secret"]

    def test_source_and_date_filters(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        billing = SearchFilters(groups=None, sources=frozenset({"billing"}))
        assert {h.chunk.doc_id for h in index.dense_search(embedder.embed_query("anything"), 10, billing)} == {"refund"}
        recent = SearchFilters(groups=None, updated_after=datetime(2025, 6, 1, tzinfo=UTC))
        found = {h.chunk.doc_id for h in index.dense_search(embedder.embed_query("wifi router"), 10, recent)}
        assert "wifi" not in found and found

    def test_replace_is_idempotent_and_replaces(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        before = index.count()
        c = make_chunk("remote")
        index.replace("remote", [c], embedder.embed_documents([c.text]))
        assert index.count() == before
        new = [make_chunk("remote", ordinal=i, text=f"Part {i}: hold Back and Play to pair.") for i in range(2)]
        index.replace("remote", new, embedder.embed_documents([n.text for n in new]))
        assert index.count() == before + 1
        hits = index.keyword_search("pair hold Back Play", 10, UNRESTRICTED)
        texts = {h.chunk.text for h in hits if h.chunk.doc_id == "remote"}
        assert texts == {n.text for n in new}

    def test_delete(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        index.delete(["wifi", "no-such-doc"])
        assert all(h.chunk.doc_id != "wifi" for h in index.keyword_search("wifi router", 10, UNRESTRICTED))
        index.replace("remote", [], np.zeros((0, embedder.dimension), dtype=np.float32))
        assert index.count() == 2

    def test_metadata_round_trips(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        hit = index.keyword_search("refund billing", 1, UNRESTRICTED)[0].chunk
        assert hit == make_chunk("refund", source="billing")


class RerankerContract:
    def test_reorders_given_passages_only(self, reranker: Reranker) -> None:
        given = [ScoredChunk(make_chunk(k), 1.0 - i / 10, {"fused": 1.0 - i / 10}) for i, k in enumerate(TEXTS)]
        out = reranker.rerank("how do I get a refund for enterprise billing", given, top_k=2)
        assert isinstance(reranker, Reranker)
        assert 0 < len(out) <= 2
        assert {o.chunk.id for o in out} <= {g.chunk.id for g in given}
        assert out[0].chunk.doc_id == "refund"
        assert all("rerank" in o.scores and o.score == o.scores["rerank"] for o in out)
        assert out == sorted(out, key=lambda o: -o.score)

    def test_empty(self, reranker: Reranker) -> None:
        assert reranker.rerank("anything", [], top_k=3) == []


class GeneratorContract:
    request = GenerationRequest(
        question="How do I get a refund?",
        passages=(ScoredChunk(make_chunk("refund"), 1.0), ScoredChunk(make_chunk("wifi"), 0.5)),
    )

    def test_generates_cited_text(self, generator: Generator) -> None:
        assert isinstance(generator, Generator)
        gen = generator.generate(self.request)
        assert isinstance(gen, Generation)
        assert gen.text.strip()
        assert "[1]" in gen.text

    def test_stream_concatenates_to_generate(self, generator: Generator) -> None:
        streamed = "".join(generator.stream(self.request))
        assert streamed.strip() == generator.generate(self.request).text.strip()


@pytest.fixture
def offline_embedder() -> Embedder:
    from adapters.providers.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder()
