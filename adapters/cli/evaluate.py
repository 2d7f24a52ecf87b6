"""``eval answers`` and ``eval retrieval``: figures on a BEIR-format dataset, in a temporary index."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from adapters.cli.common import err, fail, out, services

if TYPE_CHECKING:
    from adapters.factory import Services

eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval and answers on a BEIR-format dataset.")


def _emit_figures(figures: Mapping[str, float | int | None], as_json: bool) -> None:
    """Evaluation figures: exactly one JSON object on stdout with --json, else aligned lines."""
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    width = max(map(len, figures), default=0)
    for key, value in figures.items():
        out.print(f"{key:>{width}}  {value}")


def _build_eval_services(dataset: Path, tmp: str) -> Services:
    for needed in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        if not (dataset / needed).is_file():
            fail(f"{dataset} has no {needed}")
    built = services(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/eval.db")
    err.print(f"building a temporary index from {dataset / 'corpus.jsonl'} …")
    from knowledge.loaders import iter_documents

    t0 = time.perf_counter()
    report = built.ingestor.ingest(
        iter_documents([dataset / "corpus.jsonl"], source="eval", max_bytes=1 << 31), source="eval"
    )
    err.print(f"{report.summary()} in {time.perf_counter() - t0:.1f}s; {built.index.count()} chunks")
    return built


@eval_app.command("answers")
def eval_answers(
    dataset: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
    answers_out: Annotated[
        Path | None,
        typer.Option("--answers-out", help="Write one JSON line per query (question, reply, citations) here"),
    ] = None,
) -> None:
    """Build a fresh index from a BEIR folder, ask every query (with its history), measure the answers."""
    from bot.evaluation import answer_figures, answer_record, load_queries

    sink = None
    if answers_out is not None:
        try:
            sink = answers_out.open("w", encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {answers_out}: {exc.strerror or exc}")
    try:
        with tempfile.TemporaryDirectory(prefix="supportbot-eval-") as tmp:
            built = _build_eval_services(dataset, tmp)
            built.answer_store.get_answer("")  # opens (and migrates) the database before timing
            built.decline_policy()

            def record(q: Any, answer: Any) -> None:
                if sink is not None:
                    sink.write(json.dumps(answer_record(q, answer)) + "\n")

            figures = answer_figures(built.answers, load_queries(dataset), on_answer=record)
    finally:
        if sink is not None:
            sink.close()
    _emit_figures(figures, as_json)


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Build a fresh temporary index from a BEIR folder and measure retrieval."""
    from bot.evaluation import load_queries, retrieval_figures

    with tempfile.TemporaryDirectory(prefix="supportbot-eval-") as tmp:
        built = _build_eval_services(dataset, tmp)
        figures = retrieval_figures(built.retriever, load_queries(dataset))
    _emit_figures(figures, as_json)
