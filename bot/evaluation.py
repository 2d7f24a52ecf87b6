"""Retrieval metrics on BEIR-format data (nDCG@10, Recall@k, MRR@10 at the document level) and answer figures."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.answering import AnswerService
from bot.identity import corpus_id
from bot.retrieval import Retriever
from bot.text import content_words
from bot.types import UNRESTRICTED, Answer, Decision, Question, ScoredChunk, Turn


@dataclass(frozen=True)
class EvalQuery:
    id: str
    text: str
    relevant: frozenset[str]
    history: tuple[tuple[str, str], ...] = ()  # (speaker, text)
    extra: tuple[tuple[str, str], ...] = ()
    reference: str = ""  # a reference answer (``answer`` or ``reference_answer``), when the set has one


def load_queries(dataset: Path) -> list[EvalQuery]:
    """Every query of a BEIR folder; ``relevant`` is empty for a query with no qrels row."""
    qrels: dict[str, set[str]] = {}
    with (dataset / "qrels" / "test.tsv").open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            parts = line.rstrip("\n").split("\t")
            if n == 0 and not parts[-1].lstrip("-").isdigit():
                continue  # header
            if len(parts) >= 3 and int(parts[2]) > 0:
                qrels.setdefault(parts[0], set()).add(parts[1])
    out: list[EvalQuery] = []
    with (dataset / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            q = json.loads(line)
            history = tuple((str(t.get("speaker", "user")), str(t.get("text", ""))) for t in q.get("history") or ())
            extra = tuple((k, str(v)) for k, v in q.items() if k in ("answerability", "kind", "group"))
            reference = str(q.get("answer") or q.get("reference_answer") or "")
            out.append(
                EvalQuery(
                    str(q["_id"]), str(q["text"]), frozenset(qrels.get(str(q["_id"]), ())), history, extra, reference
                )
            )
    return out


def doc_ranking(passages: Sequence[ScoredChunk]) -> list[str]:
    """Documents in the order of their best returned passage.

    Only what the product shows counts: a near-duplicate passage collapsed into another
    (``Retrieval.duplicates_of``) is not shown, so its document gets no credit. Documents are
    named by their corpus ``_id`` (what qrels name), not the index's doc id.
    """
    return list(dict.fromkeys(corpus_id(p.chunk.doc_id) for p in passages))


def ndcg_at(ranked: Sequence[str], relevant: frozenset[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: Sequence[str], relevant: frozenset[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def mrr_at(ranked: Sequence[str], relevant: frozenset[str], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if d in relevant:
            return 1 / (i + 1)
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def retrieval_figures(retriever: Retriever, queries: Sequence[EvalQuery]) -> dict[str, float | int | None]:
    """Search the top 100 for every query with relevant documents (unrestricted) and measure the
    document ranking: nDCG@10, Recall@10 and @50, MRR@10 (means), and search time percentiles."""
    queries = [q for q in queries if q.relevant]
    ndcg: list[float] = []
    r10: list[float] = []
    r50: list[float] = []
    mrr: list[float] = []
    times: list[float] = []
    for q in queries:
        t = time.perf_counter()
        result = retriever.search(q.text, 100, UNRESTRICTED)
        times.append((time.perf_counter() - t) * 1000)
        ranked = doc_ranking(result.passages)
        ndcg.append(ndcg_at(ranked, q.relevant))
        r10.append(recall_at(ranked, q.relevant, 10))
        r50.append(recall_at(ranked, q.relevant, 50))
        mrr.append(mrr_at(ranked, q.relevant))
    n = len(queries) or 1
    return {
        "ndcg@10": round(sum(ndcg) / n, 4),
        "recall@10": round(sum(r10) / n, 4),
        "recall@50": round(sum(r50) / n, 4),
        "mrr@10": round(sum(mrr) / n, 4),
        "queries": len(queries),
        "p50_ms": round(percentile(times, 0.5), 2),
        "p95_ms": round(percentile(times, 0.95), 2),
    }


def reference_recall(reference: str, reply: str) -> float:
    """The share of ``reference``'s content words (lower-cased alphanumeric tokens, stopwords
    removed) that appear in ``reply``; 0.0 when the reference has none."""
    wanted = set(content_words(reference))
    if not wanted:
        return 0.0
    return len(wanted & set(content_words(reply))) / len(wanted)


def answer_record(q: EvalQuery, answer: Answer) -> dict[str, object]:
    """One line of ``--answers-out``: what was asked and what the bot replied, with its sources."""
    return {
        "id": q.id,
        "question": q.text,
        "decision": answer.decision.value,
        "text": answer.text,
        "confidence": answer.confidence,
        # Named as the corpus names them (its ``_id``s, what qrels use), not by the index's ids.
        "citations": [
            {"number": c.number, "doc_id": corpus_id(c.doc_id), "chunk_id": _corpus_chunk_id(c.doc_id, c.chunk_id)}
            for c in answer.citations
        ],
        "see_also": [corpus_id(c.doc_id) for c in answer.see_also],
    }


def _corpus_chunk_id(doc_id: str, chunk_id: str) -> str:
    """``<corpus _id>#<n>`` for a chunk id ``<doc id>#<n>``."""
    return corpus_id(doc_id) + chunk_id[len(doc_id) :] if chunk_id.startswith(doc_id) else chunk_id


def answer_figures(
    service: AnswerService,
    queries: Sequence[EvalQuery],
    on_answer: Callable[[EvalQuery, Answer], None] | None = None,
) -> dict[str, float | int | None]:
    """Ask every query (with its history) and measure answers and declines.

    A query with relevant documents is answerable, one without is not. Citation precision
    is the share of all citations (in answered replies) that point at a relevant document.
    ``reference_recall`` averages :func:`reference_recall` over the answerable queries that
    carry a reference answer (a decline's text holds next to none of it; None when no query
    has one); ``median_words`` is the median
    number of words of an answered reply. ``on_answer`` sees every query with its Answer.
    """
    answered = declined = cited_relevant = citations = relevant_citations = 0
    answerable = unanswerable = 0
    times: list[float] = []
    recalls: list[float] = []
    lengths: list[float] = []
    for q in queries:
        question = Question(text=q.text, asker="eval", history=tuple(Turn(s, t) for s, t in q.history))
        t = time.perf_counter()
        answer = service.answer(question)
        times.append((time.perf_counter() - t) * 1000)
        if on_answer is not None:
            on_answer(q, answer)
        is_answer = answer.decision == Decision.ANSWERED
        if is_answer:
            lengths.append(len(answer.text.split()))
        if q.relevant and q.reference:
            recalls.append(reference_recall(q.reference, answer.text))
        if q.relevant:
            answerable += 1
            answered += is_answer
            if is_answer and any(corpus_id(c.doc_id) in q.relevant for c in answer.citations):
                cited_relevant += 1
        else:
            unanswerable += 1
            declined += not is_answer
        if is_answer and q.relevant:
            citations += len(answer.citations)
            relevant_citations += sum(corpus_id(c.doc_id) in q.relevant for c in answer.citations)
    return {
        "answered_rate": round(answered / answerable, 4) if answerable else 0.0,
        "declined_rate": round(declined / unanswerable, 4) if unanswerable else 0.0,
        "citation_precision": round(relevant_citations / citations, 4) if citations else 0.0,
        "cited_relevant_rate": round(cited_relevant / answerable, 4) if answerable else 0.0,
        "answerable": answerable,
        "unanswerable": unanswerable,
        "p50_ms": round(percentile(times, 0.5), 2),
        "p95_ms": round(percentile(times, 0.95), 2),
        "reference_recall": round(sum(recalls) / len(recalls), 4) if recalls else None,
        "median_words": round(percentile(lengths, 0.5), 1),
    }
