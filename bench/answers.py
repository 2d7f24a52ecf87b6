"""Answer benchmark: the offline default on every evaluation set, and a decline curve on mtrag_cloud.

For each BEIR folder it builds a fresh temporary index through the composition root (the
same path as ``supportbot eval answers``), calibrates, and measures with
``bot.evaluation.answer_figures``. On mtrag_cloud it also measures the even and the odd
half of the queries separately (``folds``: a guard against settings that only fit one
half), then sweeps the decline strictness (both thresholds scaled) and records
declined_rate against cited_relevant_rate.

    .venv/bin/python bench/answers.py [--data /work/shared/evaldata] [--json]

Every set's figures include ``reference_recall`` (share of the reference answer's content
words found in the reply, where the set has reference answers) and ``median_words`` (median
words per answered reply).

Writes bench/results/answers.json and bench/results/answers_curve.png. With ``--json``
exactly one JSON object goes to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.factory import Services, build  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from bot.answering import AnswerService  # noqa: E402
from bot.evaluation import answer_figures, load_queries  # noqa: E402

SETS = ("mtrag_cloud", "emanual_tv", "stackfaq")
CURVE_SET = "mtrag_cloud"
STRICTNESS = (0.0, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0)


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def build_services(dataset: Path, tmp: str) -> Services:
    from knowledge.loaders import iter_documents

    services = build(Settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/eval.db"))  # type: ignore[call-arg]
    t0 = time.perf_counter()
    report = services.ingestor.ingest(
        iter_documents([dataset / "corpus.jsonl"], source="eval", max_bytes=1 << 31), source="eval"
    )
    log(
        f"{dataset.name}: {report.summary()} in {time.perf_counter() - t0:.1f}s; {services.index.count()} chunks"
    )
    services.answer_store.engine  # noqa: B018  (migrate before timing)
    return services


def run(data: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"sets": {}, "curve": []}
    for name in SETS:
        dataset = data / name
        if not (dataset / "corpus.jsonl").is_file():
            log(f"skipping {name}: no corpus at {dataset}")
            continue
        with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
            services = build_services(dataset, tmp)
            t0 = time.perf_counter()
            policy = services.decline_policy()
            calibration_s = time.perf_counter() - t0
            queries = load_queries(dataset)
            figures = answer_figures(services.answers, queries)
            log(f"{name}: {figures}")
            results["sets"][name] = {
                **figures,
                "policy": {k: getattr(policy, k) for k in policy.__dataclass_fields__},
                "calibration_s": round(calibration_s, 2),
            }
            if name == CURVE_SET:
                # Overfitting guard: the same settings on the even and the odd half of the queries.
                results["sets"][name]["folds"] = {
                    "even": answer_figures(services.answers, queries[0::2]),
                    "odd": answer_figures(services.answers, queries[1::2]),
                }
                log(f"  folds: {results['sets'][name]['folds']}")
                base = services.answers
                for strictness in STRICTNESS:
                    service = AnswerService(
                        base.retriever, base.generator, None, policy=policy.scaled(strictness), k=base.k
                    )
                    point = answer_figures(service, queries)
                    log(f"  strictness {strictness}: {point}")
                    results["curve"].append({"strictness": strictness, **point})
    return results


def plot(curve: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [p["declined_rate"] for p in curve]
    ys = [p["cited_relevant_rate"] for p in curve]
    ax.plot(xs, ys, marker="o", label="cited_relevant_rate")
    ax.plot(xs, [p["answered_rate"] for p in curve], marker=".", linestyle="--", label="answered_rate")
    for p in curve:
        ax.annotate(f"{p['strictness']:g}", (p["declined_rate"], p["cited_relevant_rate"]), fontsize=7)
    ax.axvline(0.8, color="grey", linewidth=0.5)
    ax.axhline(0.85, color="grey", linewidth=0.5)
    ax.set_xlabel("declined_rate (unanswerable questions declined)")
    ax.set_ylabel("rate on answerable questions")
    ax.set_title(f"{CURVE_SET}: decline strictness sweep (labels: threshold scale)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/evaldata"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    results = run(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "answers.json").write_text(json.dumps(results, indent=2) + "\n")
    if results["curve"]:
        plot(results["curve"], args.out / "answers_curve.png")
    if args.json:
        sys.stdout.write(json.dumps(results) + "\n")
    else:
        for name, figures in results["sets"].items():
            log(
                f"{name:>12}  "
                + "  ".join(f"{k}={v}" for k, v in figures.items() if k not in ("policy", "folds"))
            )


if __name__ == "__main__":
    main()
