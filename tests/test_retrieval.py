"""Behaviour of the hybrid retriever on a small real index (LocalIndex + the bundled ONNX embedder)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from adapters.providers.local_index import LocalIndex
from adapters.providers.onnx_embedder import OnnxEmbedder
from bot.retrieval import (
    RetrievalConfig,
    Retriever,
    adaptive_dense_weight,
    collapse_near_duplicates,
    fuse,
    keyword_coverage,
)
from bot.types import PUBLIC, Chunk, ScoredChunk, SearchFilters
from knowledge.pipeline import embedding_text

PASSAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "refunds": (
        "Refunds",
        "Customers can request a refund within 30 days of purchase from the billing page.",
        (PUBLIC,),
    ),
    "password": (
        "Resetting your password",
        "Open Settings, choose Security and press Reset password. A reset link is emailed to you.",
        (PUBLIC,),
    ),
    "printer": (
        "Printer setup",
        "Connect the printer with the USB cable, then install the driver from the vendor site.",
        (PUBLIC,),
    ),
    "vpn": (
        "VPN access",
        "The VPN client needs a hardware token. Ask the service desk to enrol your token first.",
        (PUBLIC,),
    ),
    "salaries": (
        "Salary bands",
        "Salary bands for engineering grades are reviewed every April by the compensation committee.",
        ("hr",),
    ),
    "holidays": (
        "Public holidays",
        "The office is closed on public holidays; the support line stays open for urgent incidents.",
        (PUBLIC,),
    ),
    "holidays-copy": (
        "Public holidays (copy)",
        "The office is closed on public holidays; the support line stays open for urgent incidents.",
        (PUBLIC,),
    ),
}


def _chunk(doc_id: str, title: str, text: str, access: tuple[str, ...]) -> Chunk:
    return Chunk(
        id=f"{doc_id}#0",
        doc_id=doc_id,
        ordinal=0,
        text=text,
        title=title,
        heading_path=(),
        url=f"https://kb.example/{doc_id}",
        source="kb",
        content_hash=doc_id,
        access=access,
    )


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: OnnxEmbedder) -> LocalIndex:
    idx = LocalIndex(tmp_path_factory.mktemp("retrieval") / "index.sqlite")
    for doc_id, (title, text, access) in PASSAGES.items():
        chunk = _chunk(doc_id, title, text, access)
        idx.replace(doc_id, [chunk], embedder.embed_documents([embedding_text(chunk)]))
    return idx


@pytest.fixture
def retriever(embedder: OnnxEmbedder, index: LocalIndex) -> Retriever:
    return Retriever(embedder, index)


def _docs(retriever: Retriever, query: str, filters: SearchFilters | None = None) -> list[str]:
    return [p.chunk.doc_id for p in retriever.search(query, 5, filters or SearchFilters()).passages]


def test_the_passage_that_answers_comes_first(retriever: Retriever) -> None:
    assert _docs(retriever, "How do I reset my password?")[0] == "password"
    assert _docs(retriever, "my printer is not connected, where is the driver")[0] == "printer"


def test_a_passage_found_by_both_lists_outranks_one_found_by_one(
    index: LocalIndex, embedder: OnnxEmbedder
) -> None:
    query = "refund within 30 days"
    dense = index.dense_search(embedder.embed_query(query), 10, SearchFilters())
    keyword = index.keyword_search(query, 10, SearchFilters())
    both = {h.chunk.id for h in dense} & {h.chunk.id for h in keyword}
    assert "refunds#0" in both
    # The best keyword hit is "refunds"; drop it from the dense list and give the dense list's
    # top place to another passage: with equal weights the passage in both lists still wins.
    only_dense = [h for h in dense if h.chunk.id != "refunds#0"]
    with_refund_last = [*only_dense, next(h for h in dense if h.chunk.id == "refunds#0")]
    fused = fuse(with_refund_last, keyword, RetrievalConfig(), dense_weight=0.5)
    assert fused[0].chunk.id == "refunds#0"
    assert set(fused[0].scores) == {"fused", "dense", "keyword"}
    single = [h for h in fused if h.chunk.id not in both]
    assert all(h.score < fused[0].score for h in single)


def test_fuse_gives_a_passage_in_one_list_only_its_share() -> None:
    a = ScoredChunk(_chunk("a", "A", "alpha", (PUBLIC,)), 0.9, {"dense": 0.9})
    b = ScoredChunk(_chunk("b", "B", "beta", (PUBLIC,)), 0.8, {"dense": 0.8})
    kb = ScoredChunk(b.chunk, 5.0, {"keyword": 5.0})
    fused = fuse([a, b], [kb], RetrievalConfig(), dense_weight=0.5)
    assert [h.chunk.id for h in fused] == ["b#0", "a#0"]
    assert fused[1].score == pytest.approx(0.5)  # dense share only: 0.5 * 0.9 / 0.9
    assert fused[0].score == pytest.approx(0.5 * 0.8 / 0.9 + 0.5)


def test_filters_are_applied_before_ranking(retriever: Retriever) -> None:
    query = "salary bands for engineering grades"
    assert "salaries" not in _docs(retriever, query)
    assert _docs(retriever, query, SearchFilters(groups=frozenset({PUBLIC, "hr"})))[0] == "salaries"
    result = retriever.search(query, 5, SearchFilters())
    assert all(h.chunk.doc_id != "salaries" for h in (*result.dense, *result.keyword))


def test_near_duplicates_are_collapsed(retriever: Retriever) -> None:
    docs = _docs(retriever, "Is the office closed on public holidays?")
    assert docs[0] in {"holidays", "holidays-copy"}
    assert len({"holidays", "holidays-copy"} & set(docs)) == 1
    kept = collapse_near_duplicates(retriever.search("public holidays", 5, SearchFilters()).keyword, 0.9)
    assert len({"holidays", "holidays-copy"} & {h.chunk.doc_id for h in kept}) == 1


def test_covered_queries_trust_keywords_and_paraphrases_trust_vectors(retriever: Retriever) -> None:
    config = retriever.config
    covered = retriever.search("reset password link emailed", 5, SearchFilters())
    assert covered.coverage is not None and covered.coverage >= config.coverage_threshold
    assert covered.dense_weight == config.dense_weight == 0.2
    # Only "forgot" and "login" are content words here and neither is in any passage's text.
    paraphrase = retriever.search("I forgot my login secret", 5, SearchFilters())
    assert paraphrase.coverage is None or paraphrase.coverage < config.coverage_threshold
    assert paraphrase.dense_weight == config.dense_weight_uncovered == 0.8
    assert paraphrase.passages[0].chunk.doc_id == "password"


def test_keyword_coverage_and_weight_rule() -> None:
    hit = ScoredChunk(
        _chunk("p", "Installing apps", "Open the store and install the app you want.", (PUBLIC,)), 1.0
    )
    assert keyword_coverage("installing an app", hit) == 1.0  # stems: install/installing, app/apps
    assert keyword_coverage("uninstall browser extension", hit) == 0.0
    assert keyword_coverage("the of and", hit) == 0.0
    config = RetrievalConfig()
    assert adaptive_dense_weight(None, config) == config.dense_weight_uncovered
    assert adaptive_dense_weight(0.69, config) == config.dense_weight_uncovered
    assert adaptive_dense_weight(0.7, config) == config.dense_weight
    fixed = replace(config, dense_weight=0.5, dense_weight_uncovered=0.5)
    assert adaptive_dense_weight(0.1, fixed) == adaptive_dense_weight(1.0, fixed) == 0.5


def test_search_reports_timings_and_respects_k(retriever: Retriever, tmp_path: Path) -> None:
    result = retriever.search("printer driver", 2, SearchFilters())
    assert len(result.passages) == 2
    assert {"embed", "dense", "keyword", "fuse_rerank"} <= set(result.timings_ms)
    empty = Retriever(retriever.embedder, LocalIndex(tmp_path / "empty.sqlite")).search(
        "x", 3, SearchFilters()
    )
    assert empty.passages == () and empty.coverage is None
