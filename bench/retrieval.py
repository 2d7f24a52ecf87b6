"""nDCG@10 on the three evaluation sets for BM25 alone, dense alone, hybrid, and hybrid + each reranker.

    python bench/retrieval.py [--json] [--sets emanual_tv,stackfaq,mtrag_cloud]

Each set gets a fresh index built by the configured pipeline (chunked as any ingest; a
corpus document ranks where its best chunk ranks). Rerankers: the ones that are available
here — a cross-encoder when SUPPORTBOT_CROSS_ENCODER_DIR points at one, Cohere Rerank when
COHERE_API_KEY is set; the others are listed as skipped with the reason.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import EVALDATA, emit, log  # noqa: I001

from adapters.factory import Services
from adapters.settings import Settings
from bot.evaluation import doc_ranking, load_queries, ndcg_at, percentile
from bot.retrieval import Retriever
from bot.types import UNRESTRICTED
from knowledge.loaders import iter_documents

SETS = ("emanual_tv", "stackfaq", "mtrag_cloud")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--sets", default=",".join(SETS))
    args = parser.parse_args()
    base = Settings()
    figures: dict[str, object] = {}
    skipped: dict[str, str] = {}
    for name in args.sets.split(","):
        dataset = EVALDATA / name
        with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
            settings = base.model_copy(
                update={"data_dir": Path(tmp), "database_url": None, "reranker": "none"}
            )
            services = Services(settings)
            t = time.perf_counter()
            services.ingestor.ingest(
                iter_documents([dataset / "corpus.jsonl"], source="eval", max_bytes=1 << 31), source="eval"
            )
            log(f"{name}: {services.index.count()} chunks indexed in {time.perf_counter() - t:.0f}s")
            queries = [q for q in load_queries(dataset) if q.relevant]
            retrievers: dict[str, Retriever | str] = {"hybrid": services.retriever}
            for reranker in ("cross-encoder", "cohere"):
                try:
                    with_reranker = Services(settings.model_copy(update={"reranker": reranker}))
                    if reranker == "cross-encoder" and settings.cross_encoder_dir is None:
                        raise LookupError(
                            "no SUPPORTBOT_CROSS_ENCODER_DIR (no cross-encoder ships in a wheel)"
                        )
                    if reranker == "cohere" and settings.cohere_api_key is None:
                        raise LookupError("no COHERE_API_KEY")
                    retrievers[f"hybrid+{reranker}"] = Retriever(
                        services.embedder, services.index, with_reranker.reranker, services.retriever.config
                    )
                except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could not run
                    skipped[f"hybrid+{reranker}"] = str(exc)
            scores: dict[str, list[float]] = {"bm25": [], "dense": []}
            times: dict[str, list[float]] = {}
            for q in queries:
                kw = services.index.keyword_search(q.text, 100, UNRESTRICTED)
                scores["bm25"].append(ndcg_at(doc_ranking(kw), q.relevant))
                dense = services.index.dense_search(services.embedder.embed_query(q.text), 100, UNRESTRICTED)
                scores["dense"].append(ndcg_at(doc_ranking(dense), q.relevant))
                for label, retriever in retrievers.items():
                    assert isinstance(retriever, Retriever)
                    t = time.perf_counter()
                    result = retriever.search(q.text, 30, UNRESTRICTED)
                    times.setdefault(label, []).append((time.perf_counter() - t) * 1000)
                    scores.setdefault(label, []).append(
                        ndcg_at(doc_ranking(result.passages), q.relevant)
                    )
            for label, values in scores.items():
                figures[f"{name}.{label}.ndcg@10"] = round(sum(values) / len(values), 4)
            for label, values in times.items():
                figures[f"{name}.{label}.p50_ms"] = round(percentile(values, 0.5), 2)
            log(" ".join(f"{k}={v}" for k, v in figures.items() if k.startswith(name)))
    figures["skipped"] = skipped
    emit("retrieval", figures, args.json)


if __name__ == "__main__":
    main()
