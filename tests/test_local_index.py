"""LocalIndex's large-index dense path (sign-bit prefilter + exact rescoring) against the exact one.

The threshold is lowered to 100 rows so a few hundred rows take the prefiltered path; a second
LocalIndex on the same file with the prefilter off gives the exact answer to compare with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adapters.providers.local_index import LocalIndex
from bot.types import PUBLIC, UNRESTRICTED, SearchFilters
from tests.contracts import make_chunk

DIM = 384
CLUSTERS = 20
STAFF = SearchFilters(groups=frozenset({"staff"}))


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return out


@pytest.fixture
def centers() -> np.ndarray:
    return _unit(np.random.default_rng(0).standard_normal((CLUSTERS, DIM)))


def _add_docs(index: LocalIndex, centers: np.ndarray, docs: range, per_doc: int, seed: int) -> None:
    """Docs of ``per_doc`` chunks; chunk i of doc d lies near center (i + d) % CLUSTERS; odd docs are staff-only."""
    rng = np.random.default_rng(seed)
    for d in docs:
        access = ("staff",) if d % 2 else (PUBLIC,)
        chunks = [
            make_chunk("x", doc=f"d{d}", ordinal=i, access=access, text=f"passage {d} {i}")
            for i in range(per_doc)
        ]
        noise = rng.standard_normal((per_doc, DIM)) * (0.3 / np.sqrt(DIM))
        index.replace(f"d{d}", chunks, _unit(centers[(np.arange(per_doc) + d) % CLUSTERS] + noise))


def _queries(centers: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    return _unit(centers + rng.standard_normal(centers.shape) * (0.3 / np.sqrt(DIM)))


def _assert_same_as_exact(
    approx: LocalIndex, exact: LocalIndex, queries: np.ndarray, k: int, filters: SearchFilters
) -> None:
    for q in queries:
        got = approx.dense_search(q, k, filters)
        want = exact.dense_search(q, k, filters)
        assert len(got) == len(want) == k
        assert [h.chunk.id for h in got] == [h.chunk.id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LocalIndex, LocalIndex, list[int]]:
    """(prefiltered index, exact index on the same file, calls of the prefilter)."""
    path = tmp_path / "index.sqlite"
    approx = LocalIndex(path, approx_min_rows=100, rescore=100, rescore_per_k=5)
    exact = LocalIndex(path, approx_min_rows=10**9)
    calls: list[int] = []
    prefilter = approx.loaded._prefilter

    def counted(query: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
        calls.append(count)
        return prefilter(query, mask, count)

    monkeypatch.setattr(approx.loaded, "_prefilter", counted)
    return approx, exact, calls


def test_prefiltered_dense_search_equals_exact_with_filters_and_deletions(
    pair: tuple[LocalIndex, LocalIndex, list[int]], centers: np.ndarray
) -> None:
    approx, exact, calls = pair
    _add_docs(approx, centers, range(30), per_doc=20, seed=2)  # 600 rows, 300 staff-only
    queries = _queries(centers)
    _assert_same_as_exact(approx, exact, queries, 5, UNRESTRICTED)
    _assert_same_as_exact(approx, exact, queries, 5, STAFF)
    assert calls and all(c == 100 for c in calls)  # the prefilter ran, 100 of 600 / 300 rows
    assert all(h.chunk.access == ("staff",) for q in queries for h in approx.dense_search(q, 5, STAFF))

    deleted = {f"d{d}" for d in range(0, 30, 3)}
    approx.delete(sorted(deleted))
    for filters in (UNRESTRICTED, STAFF):
        _assert_same_as_exact(approx, exact, queries, 5, filters)
        for q in queries:
            assert not {h.chunk.doc_id for h in approx.dense_search(q, 50, filters)} & deleted
    # A replaced document's old rows are gone and its new rows are found.
    _add_docs(approx, centers, range(3, 4), per_doc=20, seed=9)
    _assert_same_as_exact(approx, exact, queries, 5, UNRESTRICTED)
    assert approx.count() == 600 - 200 + 20


def test_prefilter_sign_bits_follow_compaction_growth_and_reload(
    pair: tuple[LocalIndex, LocalIndex, list[int]], centers: np.ndarray, tmp_path: Path
) -> None:
    approx, exact, calls = pair
    _add_docs(approx, centers, range(60), per_doc=20, seed=3)  # 1200 rows
    queries = _queries(centers)
    _assert_same_as_exact(approx, exact, queries, 5, UNRESTRICTED)
    deleted = {f"d{d}" for d in range(51)}
    approx.delete(sorted(deleted))  # 1020 deleted rows: the matrix is compacted
    assert approx.loaded._n == approx.count() == 180
    assert approx.loaded._bits_n == 180
    _assert_same_as_exact(approx, exact, queries, 5, STAFF)
    _add_docs(approx, centers, range(100, 140), per_doc=20, seed=4)  # grows past the compacted size
    assert approx.loaded._bits_n == approx.loaded._n == 980
    for filters in (UNRESTRICTED, STAFF):
        _assert_same_as_exact(approx, exact, queries, 5, filters)
        for q in queries:
            assert not {h.chunk.doc_id for h in approx.dense_search(q, 20, filters)} & deleted
    assert calls
    # A fresh process loading the file builds the sign bits on load.
    reloaded = LocalIndex(tmp_path / "index.sqlite", approx_min_rows=100, rescore=100, rescore_per_k=5)
    _assert_same_as_exact(reloaded, exact, queries, 5, UNRESTRICTED)
    assert reloaded.loaded._bits_n == reloaded.loaded._n == 980


def test_small_indexes_stay_exact_and_keep_no_sign_bits(tmp_path: Path, centers: np.ndarray) -> None:
    index = LocalIndex(tmp_path / "index.sqlite")
    _add_docs(index, centers, range(5), per_doc=20, seed=5)
    assert index.loaded._n == 100 < LocalIndex.APPROX_MIN_ROWS
    assert index.loaded._bits_n == 0 and index.loaded._bits.size == 0
    q = _queries(centers)[0]
    scores = [h.score for h in index.dense_search(q, 5, UNRESTRICTED)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5


def test_prefilter_with_few_allowed_rows_scores_them_all(
    pair: tuple[LocalIndex, LocalIndex, list[int]], centers: np.ndarray
) -> None:
    approx, exact, calls = pair
    _add_docs(approx, centers, range(2), per_doc=20, seed=6)
    _add_docs(approx, centers, range(2, 12, 2), per_doc=40, seed=7)  # 240 rows, 20 staff-only
    queries = _queries(centers)
    _assert_same_as_exact(approx, exact, queries, 5, STAFF)
    assert not calls  # 20 allowed rows <= 100 candidates: rescored exactly, no prefilter
    assert len(approx.dense_search(queries[0], 50, STAFF)) == 20
