"""Retrieval metrics on BEIR-format data: nDCG@10, Recall@k, MRR@10 at the document level."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.types import ScoredChunk


@dataclass(frozen=True)
class EvalQuery:
    id: str
    text: str
    relevant: frozenset[str]
    history: tuple[tuple[str, str], ...] = ()  # (speaker, text)
    extra: tuple[tuple[str, str], ...] = ()


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
            out.append(EvalQuery(str(q["_id"]), str(q["text"]), frozenset(qrels.get(str(q["_id"]), ())), history, extra))
    return out


def doc_ranking(passages: Sequence[ScoredChunk]) -> list[str]:
    """Documents in the order of their best passage."""
    return list(dict.fromkeys(p.chunk.doc_id for p in passages))


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
