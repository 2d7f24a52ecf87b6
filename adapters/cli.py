"""The ``supportbot`` command line (an entry point: it alone uses the composition root)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from adapters.factory import Services, build
from adapters.settings import Settings
from bot.errors import SupportbotError
from bot.types import UNRESTRICTED, Answer, Decision, Question, SearchFilters, Turn

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Answers support questions from your own knowledge.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval and answers on a BEIR-format dataset.")
app.add_typer(eval_app, name="eval")
err = Console(stderr=True)
out = Console()


def _services(**overrides: object) -> Services:
    try:
        return build(Settings(**overrides)) if overrides else build()  # type: ignore[arg-type]
    except SupportbotError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _ingest(services: Services, targets: list[str], source: str, access: tuple[str, ...], sync: bool) -> int:
    from knowledge.loaders import iter_documents

    max_bytes = int(services.settings.max_file_mb * 1024 * 1024)
    paths = [Path(t) for t in targets]
    missing = [str(p) for p in paths if not p.exists()]
    for m in missing:
        err.print(f"[yellow]skipped[/yellow] {m}: no such file or directory")
    paths = [p for p in paths if p.exists()]
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
    ) as bar:
        task = bar.add_task("ingesting", total=None)

        def note(doc: str, outcome: str) -> None:
            bar.advance(task)
            if outcome.startswith("failed"):
                bar.console.print(f"[yellow]{doc}[/yellow]: {outcome[8:]}")

        report = services.ingestor.ingest(
            iter_documents(paths, source=source, access=access, max_bytes=max_bytes),
            source=source,
            full_sync=sync,
            progress=note,
        )
    out.print(report.summary() + f" ({report.chunks_embedded} chunks embedded)")
    return 1 if report.failed and not (report.added or report.changed or report.unchanged) else 0


@app.command()
def ingest(
    targets: Annotated[list[str], typer.Argument(help="Files, folders (recursive) or URLs")],
    source: Annotated[str, typer.Option(help="Source name the documents belong to")] = "local",
    access: Annotated[str, typer.Option(help="Comma-separated access groups")] = "public",
    sync: Annotated[bool, typer.Option(help="Also remove documents of this source that are gone")] = False,
) -> None:
    """Add or update knowledge from files and folders (unchanged documents cost nothing)."""
    services = _services()
    groups = tuple(g.strip() for g in access.split(",") if g.strip())
    raise typer.Exit(_ingest(services, targets, source, groups, sync))


@app.command()
def rollback(run: Annotated[str | None, typer.Option(help="Ingest run id (default: the last)")] = None) -> None:
    """Undo the last ingest: every document it touched returns to its previous version."""
    restored = _services().ingestor.rollback(run)
    out.print(f"rolled back {len(restored)} documents" if restored else "nothing to roll back")


@app.command()
def search(
    question: str,
    k: Annotated[int, typer.Option("-k", help="How many passages")] = 5,
    groups: Annotated[str | None, typer.Option(help="Search as a viewer with these access groups")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the best passages for a question, with scores and sources."""
    services = _services()
    filters = UNRESTRICTED if groups is None else SearchFilters(groups=frozenset(groups.split(",")))
    result = services.retriever.search(question, k, filters)
    if as_json:
        print(json.dumps([
            {"rank": i + 1, "score": round(p.score, 4), "scores": dict(p.scores), "title": p.chunk.title,
             "heading": p.chunk.heading, "url": p.chunk.url, "chunk_id": p.chunk.id, "text": p.chunk.text}
            for i, p in enumerate(result.passages)
        ]))
        return
    if not result.passages:
        out.print("No passages found. Ingest something first: supportbot ingest PATH")
    for i, p in enumerate(result.passages, 1):
        detail = " ".join(f"{k}={v:.3f}" for k, v in p.scores.items())
        where = p.chunk.heading or p.chunk.title
        out.print(f"[bold]{i}. {where}[/bold]  score {p.score:.3f} ({detail})")
        out.print(f"   {p.chunk.url}", style="dim", highlight=False)
        text = p.chunk.text if len(p.chunk.text) < 400 else p.chunk.text[:400] + "…"
        out.print(f"   {text}", highlight=False)


def _print_answer(answer: Answer) -> None:
    style = "green" if answer.decision == Decision.ANSWERED else "yellow"
    out.print(answer.text, style=style, highlight=False)
    if answer.note:
        out.print(f"({answer.note})", style="dim")
    for c in answer.citations:
        where = " > ".join(x for x in (c.title, *c.heading_path) if x) or c.doc_id
        age = f", updated {c.updated_at:%Y-%m-%d}" if c.updated_at else ""
        out.print(f"  [{c.number}] {where} — {c.url}{age}", highlight=False)


@app.command()
def ask(
    question: str,
    groups: Annotated[str, typer.Option(help="Ask as a viewer with these access groups")] = "public",
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole Answer as JSON")] = False,
) -> None:
    """Answer a question from the knowledge base, with numbered sources (or decline)."""
    from bot.serialize import answer_to_dict

    services = _services()
    q = Question(text=question, asker="cli", groups=frozenset(g for g in groups.split(",") if g))
    answer = services.answers.answer(q)
    if as_json:
        sys.stdout.write(json.dumps(answer_to_dict(answer)) + "\n")
    else:
        _print_answer(answer)


@app.command()
def chat() -> None:
    """An interactive prompt: ask questions, follow-ups carry the conversation's topic."""
    services = _services()
    history: list[Turn] = []
    out.print("Ask a question (empty line or Ctrl-D to quit).", style="dim")
    while True:
        try:
            text = input("? ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not text:
            break
        answer = services.answers.answer(Question(text=text, asker="cli", history=tuple(history)))
        _print_answer(answer)
        history += [Turn("user", text), Turn("assistant", answer.text)]


def _build_eval_services(dataset: Path, tmp: str) -> Services:
    for needed in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        if not (dataset / needed).is_file():
            err.print(f"[red]error:[/red] {dataset} has no {needed}")
            raise typer.Exit(2)
    services = _services(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/eval.db")
    err.print(f"building a temporary index from {dataset / 'corpus.jsonl'} …")
    from knowledge.loaders import iter_documents

    t0 = time.perf_counter()
    report = services.ingestor.ingest(
        iter_documents([dataset / "corpus.jsonl"], source="eval", max_bytes=1 << 31), source="eval"
    )
    err.print(f"{report.summary()} in {time.perf_counter() - t0:.1f}s; {services.index.count()} chunks")
    return services


@eval_app.command("answers")
def eval_answers(
    dataset: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Build a fresh index from a BEIR folder, ask every query (with its history), measure the answers."""
    from bot.evaluation import answer_figures, load_queries

    with tempfile.TemporaryDirectory(prefix="supportbot-eval-") as tmp:
        services = _build_eval_services(dataset, tmp)
        services.answer_store.engine  # migrate before timing  # noqa: B018
        services.decline_policy()
        figures = answer_figures(services.answers, load_queries(dataset))
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
    else:
        for key, value in figures.items():
            out.print(f"{key:>20}  {value}")


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Build a fresh temporary index from a BEIR folder and measure retrieval."""
    from bot.evaluation import doc_ranking, load_queries, mrr_at, ndcg_at, percentile, recall_at

    with tempfile.TemporaryDirectory(prefix="supportbot-eval-") as tmp:
        services = _build_eval_services(dataset, tmp)
        queries = [q for q in load_queries(dataset) if q.relevant]
        ndcg, r10, r50, mrr, times = [], [], [], [], []
        for q in queries:
            t = time.perf_counter()
            result = services.retriever.search(q.text, 100, UNRESTRICTED)
            times.append((time.perf_counter() - t) * 1000)
            ranked = doc_ranking(result.passages)
            ndcg.append(ndcg_at(ranked, q.relevant))
            r10.append(recall_at(ranked, q.relevant, 10))
            r50.append(recall_at(ranked, q.relevant, 50))
            mrr.append(mrr_at(ranked, q.relevant))
    n = len(queries) or 1
    figures = {
        "ndcg@10": round(sum(ndcg) / n, 4),
        "recall@10": round(sum(r10) / n, 4),
        "recall@50": round(sum(r50) / n, 4),
        "mrr@10": round(sum(mrr) / n, 4),
        "queries": len(queries),
        "p50_ms": round(percentile(times, 0.5), 2),
        "p95_ms": round(percentile(times, 0.95), 2),
    }
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
    else:
        for key, value in figures.items():
            out.print(f"{key:>10}  {value}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: SUPPORTBOT_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: SUPPORTBOT_PORT)")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the chat page in a browser")] = False,
) -> None:
    """Run the web server: Slack HTTP events, the Teams endpoint and the web pages."""
    import logging

    import uvicorn

    from adapters.web.app import create_app

    services = _services()
    logging.basicConfig(level=services.settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bind, number = host or services.settings.host, port or services.settings.port
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.5, lambda: webbrowser.open(f"http://{bind}:{number}/")).start()
    uvicorn.run(create_app(services), host=bind, port=number, log_level=services.settings.log_level.lower())


# -- commands added by the chat adapters and the workers go below this line --


def main() -> None:
    app()


if __name__ == "__main__":
    main()
