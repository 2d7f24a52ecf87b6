"""Does feedback improve ranking, safely? Simulated votes on stackfaq and emanual_tv paraphrases.

    python bench/feedback.py [--json]

For each set, questions are grouped by what they ask (stackfaq: its `group` field, 1,249
paraphrases of 125 questions; emanual_tv: queries that share the same relevant sections,
groups with at least two phrasings). Half of the groups get votes: the bot answers one half
of their paraphrases through the real answer service, and each answer is voted 👍 when a
cited passage is relevant by qrels and 👎 when none is. Then nDCG@10 is measured on the other
half of the paraphrases of the same questions (it must rise) and on the questions of the
groups that got no votes (it must not fall by more than 0.01).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from _common import EVALDATA, emit, log  # noqa: I001

from adapters.factory import Services
from adapters.settings import Settings
from bot.evaluation import EvalQuery, doc_ranking, load_queries, ndcg_at
from bot.types import Feedback, Platform, Question, SearchFilters, Vote
from knowledge.loaders import iter_documents


def groups_of(name: str, queries: list[EvalQuery]) -> list[list[EvalQuery]]:
    buckets: dict[str, list[EvalQuery]] = defaultdict(list)
    for q in queries:
        if not q.relevant:
            continue
        extra = dict(q.extra)
        key = extra["group"] if name == "stackfaq" and "group" in extra else "|".join(sorted(q.relevant))
        buckets[key].append(q)
    return [g for g in buckets.values() if len(g) >= 2]


def ndcg(services: Services, queries: list[EvalQuery]) -> float:
    filters = SearchFilters()
    values = []
    for q in queries:
        result = services.retriever.search(q.text, 30, filters)
        values.append(ndcg_at(doc_ranking(result.passages), q.relevant))
    return sum(values) / len(values) if values else 0.0


def run_set(name: str, seed: int = 13, sweep: bool = False) -> dict[str, float | int]:
    dataset = EVALDATA / name
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
        services = Services(Settings(data_dir=Path(tmp), _env_file=None))  # type: ignore[call-arg]
        services.ingestor.ingest(iter_documents([dataset / "corpus.jsonl"], source="eval", max_bytes=1 << 31), source="eval")
        groups = groups_of(name, load_queries(dataset))
        rng = random.Random(seed)
        rng.shuffle(groups)
        voted, unrelated = groups[: len(groups) // 2], groups[len(groups) // 2 :]
        vote_half, heldout = [], []
        for g in voted:
            g = sorted(g, key=lambda q: q.id)
            rng.shuffle(g)
            vote_half += g[: len(g) // 2]
            heldout += g[len(g) // 2 :]
        unrelated_qs = [q for g in unrelated for q in g]
        before_heldout = ndcg(services, heldout)
        before_unrelated = ndcg(services, unrelated_qs)
        ups = downs = 0
        for i, q in enumerate(vote_half):
            answer = services.answers.answer(Question(text=q.text, asker=f"user{i}", platform=Platform.WEB))
            if not answer.citations or answer.decision.value != "answered":
                continue
            good = any(c.doc_id in q.relevant for c in answer.citations)
            ups += good
            downs += not good
            services.answers.record_feedback(
                Feedback(answer.id, f"user{i}", Platform.WEB, Vote.UP if good else Vote.DOWN)
            )
        services.feedback_ranker.refresh(force=True)
        if sweep:
            default = services.feedback_ranker.config
            for sim in (0.5, 0.6, 0.7, 0.75):
                for per_vote in (0.12, 0.25, 0.4):
                    services.feedback_ranker.config = replace(default, min_similarity=sim, per_vote=per_vote)
                    log(f"{name} sim>={sim} per_vote={per_vote}: heldout {ndcg(services, heldout):.4f}"
                        f" unrelated {ndcg(services, unrelated_qs):.4f}")
            services.feedback_ranker.config = default
        figures = {
            "ndcg_before": round(before_heldout, 4),
            "ndcg_after_heldout_paraphrases": round(ndcg(services, heldout), 4),
            "ndcg_unrelated_before": round(before_unrelated, 4),
            "ndcg_unrelated_after": round(ndcg(services, unrelated_qs), 4),
            "votes_up": ups,
            "votes_down": downs,
            "heldout_queries": len(heldout),
            "unrelated_queries": len(unrelated_qs),
        }
        log(name, figures)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--sets", default="stackfaq,emanual_tv")
    parser.add_argument("--sweep", action="store_true", help="also log figures for other similarity/weight settings")
    args = parser.parse_args()
    per_set = {name: run_set(name, sweep=args.sweep) for name in args.sets.split(",")}
    # The headline keys are query-weighted over the sets; per-set figures follow.
    figures: dict[str, object] = {}
    for key, weight_key in (
        ("ndcg_before", "heldout_queries"),
        ("ndcg_after_heldout_paraphrases", "heldout_queries"),
        ("ndcg_unrelated_before", "unrelated_queries"),
        ("ndcg_unrelated_after", "unrelated_queries"),
    ):
        total = sum(float(f[weight_key]) for f in per_set.values())
        figures[key] = round(sum(float(f[key]) * float(f[weight_key]) for f in per_set.values()) / total, 4)
    figures["sets"] = per_set
    emit("feedback", figures, args.json)


if __name__ == "__main__":
    main()
