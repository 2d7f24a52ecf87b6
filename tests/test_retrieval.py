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
    phrase_match,
    with_phrase_bonus,
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
    fused = fuse([a, b], [kb], RetrievalConfig(normalise="max"), dense_weight=0.5)
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


def test_default_fusion_uses_one_weight_and_min_max_scores(retriever: Retriever) -> None:
    config = retriever.config
    assert config.normalise == "minmax" and config.dense_weight == config.dense_weight_uncovered
    covered = retriever.search("reset password link emailed", 5, SearchFilters())
    paraphrase = retriever.search("I forgot my login secret", 5, SearchFilters())
    assert covered.dense_weight == paraphrase.dense_weight == config.dense_weight
    assert covered.passages[0].chunk.doc_id == paraphrase.passages[0].chunk.doc_id == "password"


def test_min_max_fusion_spreads_each_list_over_zero_to_one() -> None:
    a = ScoredChunk(_chunk("a", "A", "alpha", (PUBLIC,)), 0.9, {"dense": 0.9})
    b = ScoredChunk(_chunk("b", "B", "beta", (PUBLIC,)), 0.8, {"dense": 0.8})
    ka = ScoredChunk(a.chunk, 2.0, {"keyword": 2.0})
    kb = ScoredChunk(b.chunk, 10.0, {"keyword": 10.0})
    minmax = RetrievalConfig(normalise="minmax")
    fused = {h.chunk.doc_id: h.score for h in fuse([a, b], [ka, kb], minmax, dense_weight=0.6)}
    assert fused == {"a": pytest.approx(0.6), "b": pytest.approx(0.4)}
    # Max normalisation keeps "a"'s small keyword score and the near-equal cosines.
    by_max = {
        h.chunk.doc_id: h.score
        for h in fuse([a, b], [ka, kb], RetrievalConfig(normalise="max"), dense_weight=0.6)
    }
    assert by_max["b"] > by_max["a"]


def test_keyword_coverage_and_weight_rule() -> None:
    hit = ScoredChunk(
        _chunk("p", "Installing apps", "Open the store and install the app you want.", (PUBLIC,)), 1.0
    )
    assert keyword_coverage("installing an app", hit) == 1.0  # stems: install/installing, app/apps
    assert keyword_coverage("uninstall browser extension", hit) == 0.0
    assert keyword_coverage("the of and", hit) == 0.0
    config = RetrievalConfig()
    assert adaptive_dense_weight(None, config) == config.dense_weight_uncovered
    assert adaptive_dense_weight(config.coverage_threshold - 0.01, config) == config.dense_weight_uncovered
    assert adaptive_dense_weight(config.coverage_threshold, config) == config.dense_weight
    fixed = replace(config, dense_weight=0.5, dense_weight_uncovered=0.5)
    assert adaptive_dense_weight(0.1, fixed) == adaptive_dense_weight(1.0, fixed) == 0.5


def test_a_passage_with_the_question_s_phrase_gains_over_scattered_words() -> None:
    phrase = ScoredChunk(
        _chunk("lang", "Settings", "To change the menu language, open General and pick one.", (PUBLIC,)), 0.5
    )
    scattered = ScoredChunk(
        _chunk("menu", "Settings", "The language of subtitles is set here; the menu shows more.", (PUBLIC,)),
        0.6,
    )
    query = "How do I change the menu language?"
    assert phrase_match(query, phrase) == 1.0  # change-menu, menu-language (stopwords skipped)
    assert phrase_match(query, scattered) == 0.0
    assert phrase_match("language", phrase) == 0.0  # one content word: no pair to match
    ranked = with_phrase_bonus(query, [scattered, phrase], 0.3)
    assert [h.chunk.doc_id for h in ranked] == ["lang", "menu"]
    assert ranked[0].score == pytest.approx(0.8) and ranked[0].scores["phrase"] == 1.0
    assert with_phrase_bonus(query, [scattered, phrase], 0.0) == [scattered, phrase]


def test_concurrent_searches_give_the_sequential_results(retriever: Retriever) -> None:
    from concurrent.futures import ThreadPoolExecutor

    queries = ["How do I reset my password?", "printer driver", "refund within 30 days", "VPN token"] * 4
    expected = [_docs(retriever, q) for q in queries]
    with ThreadPoolExecutor(8) as pool:  # more searches at once than keyword threads
        assert list(pool.map(lambda q: _docs(retriever, q), queries)) == expected


def test_search_reports_timings_and_respects_k(retriever: Retriever, tmp_path: Path) -> None:
    result = retriever.search("printer driver", 2, SearchFilters())
    assert len(result.passages) == 2
    assert {"embed", "dense", "keyword", "fuse_rerank"} <= set(result.timings_ms)
    empty = Retriever(retriever.embedder, LocalIndex(tmp_path / "empty.sqlite")).search(
        "x", 3, SearchFilters()
    )
    assert empty.passages == () and empty.coverage is None


def test_collapsed_duplicates_stay_attached_to_their_passage(retriever: Retriever) -> None:
    from bot.evaluation import doc_ranking

    result = retriever.search("Is the office closed on public holidays?", 5, SearchFilters())
    shown = [p.chunk.doc_id for p in result.passages]
    assert len({"holidays", "holidays-copy"} & set(shown)) == 1
    rep = next(p for p in result.passages if p.chunk.doc_id in {"holidays", "holidays-copy"})
    [dup] = result.duplicates_of[rep.chunk.id]
    assert {rep.chunk.doc_id, dup.chunk.doc_id} == {"holidays", "holidays-copy"}
    # The document ranking credits what the product shows: the hidden duplicate's document
    # is not listed.
    assert doc_ranking(result.passages) == shown
    assert dup.chunk.doc_id not in doc_ranking(result.passages)


def test_an_index_written_with_fts5_keywords_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    import numpy as np

    path = tmp_path / "index.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE chunks (row INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, doc_id TEXT NOT NULL,"
        " ordinal INTEGER NOT NULL, text TEXT NOT NULL, title TEXT NOT NULL, heading_path TEXT NOT NULL,"
        " url TEXT NOT NULL, source TEXT NOT NULL, content_hash TEXT NOT NULL, updated_at REAL,"
        " access TEXT NOT NULL, vector BLOB NOT NULL);"
        "CREATE VIRTUAL TABLE chunks_fts USING fts5(context, body, acl, src);"
        "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, row INTEGER NOT NULL, op TEXT NOT NULL);"
    )
    for i, (key, (title, text, access)) in enumerate(PASSAGES.items()):
        old.execute(
            "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                i + 1,
                f"{key}#0",
                key,
                0,
                text,
                title,
                "[]",
                "u",
                "kb",
                "h",
                None,
                f'["{access[0]}"]',
                np.eye(4, dtype=np.float32)[i % 4].tobytes(),
            ),
        )
        old.execute("INSERT INTO changes (row, op) VALUES (?, 'add')", (i + 1,))
    old.commit()
    old.close()
    index = LocalIndex(path)
    assert index.count() == len(PASSAGES)
    hits = index.keyword_search("printer driver", 3, SearchFilters())
    assert hits[0].chunk.doc_id == "printer"
    assert [h.chunk.doc_id for h in index.keyword_search("salary bands", 3, SearchFilters())] == []
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "chunks_fts" not in tables and "vocab" in tables


def test_keyword_index_follows_writes_from_another_process(tmp_path: Path) -> None:
    import numpy as np

    writer, reader = LocalIndex(tmp_path / "i.sqlite"), LocalIndex(tmp_path / "i.sqlite")
    vec = np.eye(1, 4, dtype=np.float32)
    writer.replace("printer", [_chunk("printer", *PASSAGES["printer"])], vec)
    assert [h.chunk.doc_id for h in reader.keyword_search("usb driver", 3, SearchFilters())] == ["printer"]
    writer.replace(
        "printer", [_chunk("printer", "Printer", "Printers now pair over Bluetooth.", (PUBLIC,))], vec
    )
    writer.replace("vpn", [_chunk("vpn", *PASSAGES["vpn"])], vec)
    assert reader.keyword_search("usb driver", 3, SearchFilters()) == []
    found = {h.chunk.doc_id for h in reader.keyword_search("bluetooth token", 3, SearchFilters())}
    assert found == {"printer", "vpn"}


def test_every_candidate_is_scored_by_both_signals(retriever: Retriever, index: LocalIndex) -> None:
    query = "reset password link"
    keyword = {h.chunk.id: h.score for h in index.keyword_search(query, 10, SearchFilters())}
    ids = [*keyword, "vpn#0", "no-such-chunk"]
    assert index.keyword_scores(query, ids) == pytest.approx([*keyword.values(), 0.0, 0.0])
    vectors = index.vectors(["password#0", "no-such-chunk"])
    assert vectors.shape == (2, 384) and not vectors[1].any()
    assert float(vectors[0] @ vectors[0]) == pytest.approx(1.0, abs=1e-3)
    result = retriever.search(query, 5, SearchFilters())
    top = result.passages[0]
    assert top.chunk.doc_id == "password"
    # "dense" stays the plain query cosine (the answer policy reads it); feedback is separate.
    assert {"fused", "dense", "dense_prf", "keyword"} <= set(top.scores)
    plain = {h.chunk.id: h.score for h in result.dense}
    assert top.scores["dense"] == pytest.approx(plain[top.chunk.id])
    off = Retriever(
        retriever.embedder, index, config=replace(retriever.config, prf_weight=0.0, complete_scores=False)
    )
    assert "dense_prf" not in off.search(query, 5, SearchFilters()).passages[0].scores


def test_the_factory_retriever_uses_complete_scores_and_feedback(tmp_path: Path) -> None:
    from adapters.factory import Services
    from adapters.settings import Settings

    services = Services(Settings(data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    chunk = _chunk("password", *PASSAGES["password"])
    services.index.replace("password", [chunk], services.embedder.embed_documents([embedding_text(chunk)]))
    top = services.retriever.search("reset password", 3, SearchFilters()).passages[0]
    assert "dense_prf" in top.scores
