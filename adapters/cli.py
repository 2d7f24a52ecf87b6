"""The ``supportbot`` command line (an entry point: it alone uses the composition root)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from adapters.factory import Services, build
from adapters.settings import Settings
from bot.errors import SourceError, SupportbotError
from bot.types import UNRESTRICTED, Answer, Decision, Document, IngestReport, Question, SearchFilters, Turn

if TYPE_CHECKING:
    from knowledge.loaders import FileSelection

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


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --:--"
    seconds = int(seconds)
    return f"ETA {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"ETA {seconds // 60}:{seconds % 60:02d}"


def _ingest(
    services: Services,
    targets: list[str],
    source: str,
    access: tuple[str, ...],
    sync: bool,
    select: FileSelection | None = None,
    report_path: Path | None = None,
) -> int:
    from rich.progress import BarColumn, Progress, TextColumn

    from knowledge.loaders import ALL_FILES, iter_documents, walk_files
    from knowledge.progress import IngestProgress

    max_bytes = int(services.settings.max_file_mb * 1024 * 1024)
    select = select or ALL_FILES
    # knowledge.sources.is_url, without importing the fetcher (httpx) when there is no URL.
    urls = [t for t in targets if "://" in t[:16]]  # fetched through knowledge/fetch.py (SSRF rules)
    paths = [Path(t).expanduser() for t in targets if t not in urls]
    # Count the files up front (a walk, nothing parsed) so the bar has a total and an ETA.
    with err.status("counting files …"):
        entries = list(walk_files(paths, select))
    tracker = IngestProgress(files_total=len(entries) + len(urls))
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(bar_width=24),
        TextColumn("{task.completed}/{task.total} files · {task.fields[chunks]} · {task.fields[rate]} · {task.fields[eta]}"),
        TextColumn("{task.fields[current]}", style="dim"),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("ingesting", total=tracker.files_total, chunks="", rate="", eta="", current="")

        def refresh(_doc: str = "", _outcome: str = "") -> None:
            expected = tracker.chunks_expected()
            total = "?" if expected is None else f"~{expected}" if tracker.files_done < (tracker.files_total or 0) else expected
            current = tracker.current
            bar.update(
                task,
                completed=tracker.files_done,
                chunks=f"{tracker.chunks_embedded}/{total} chunks",
                rate=f"{tracker.chunks_per_s():.0f} chunks/s",
                eta=_eta(tracker.eta_s()),
                current=current if len(current) <= 60 else "…" + current[-59:],
            )

        def documents() -> Iterator[Document | SourceError]:
            # URLs first (each counts as one file), then the counted files.
            if urls:
                from knowledge.sources import target_documents

                yield from target_documents(
                    urls, fetcher=services.fetcher, source=source, access=access, max_bytes=max_bytes, progress=tracker
                )
            if entries:
                yield from iter_documents(entries, source=source, access=access, max_bytes=max_bytes, progress=tracker)

        report = services.ingestor.ingest(
            documents(),
            source=source,
            full_sync=sync,
            # --sync removes only what was under these targets: other folders filed under the
            # same source are never touched.
            scope=[*urls, *(_location(p) for p in paths)],
            progress=refresh,
            tracker=tracker,
        )
        refresh()
    out.print(report.summary() + f" ({report.chunks_embedded} chunks embedded)", highlight=False)
    _print_left_out(report.skipped, report.failed, report_path)
    if report_path is not None:
        _write_report(report_path, report)
    if report.added or report.changed or report.removed:
        _recalibrate(services)
    return 1 if report.failed and not (report.added or report.changed or report.unchanged) else 0


def _location(path: Path) -> str:
    """The url prefix of a file's documents (its file URI), or of a folder's (its URI and a slash)."""
    import os

    uri = Path(os.path.abspath(path)).as_uri()
    return uri.rstrip("/") + "/" if path.is_dir() else uri


def _print_left_out(
    skipped: tuple[tuple[str, str], ...],
    failed: tuple[tuple[str, str], ...],
    report_path: Path | None,
    offer_report: bool = True,
) -> None:
    """Skipped files grouped by reason (they are expected); failed ones each with its reason."""
    from collections import Counter

    if skipped:
        reasons = Counter(reason for _, reason in skipped).most_common()
        shown = "; ".join(f"{n} {reason}" for n, reason in (r[::-1] for r in reasons[:8]))
        more = f"; {len(reasons) - 8} more reasons" if len(reasons) > 8 else ""
        err.print(f"[dim]skipped {len(skipped)}: {shown}{more}[/dim]", highlight=False)
    for path, reason in failed[:20]:
        err.print(f"[yellow]failed[/yellow] {path}: {reason}", highlight=False)
    if len(failed) > 20:
        err.print(f"… and {len(failed) - 20} more failed", highlight=False)
    if (skipped or failed) and report_path is None and offer_report:
        err.print("[dim](--report FILE lists every file with its reason)[/dim]")


def _write_report(path: Path, report: IngestReport) -> None:
    """Every document and file of the ingest with its outcome, as JSON."""
    body = {
        "summary": report.summary(),
        "chunks_embedded": report.chunks_embedded,
        "added": list(report.added),
        "changed": list(report.changed),
        "unchanged": list(report.unchanged),
        "removed": list(report.removed),
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
        "failed": [{"path": p, "reason": r} for p, r in report.failed],
    }
    try:
        path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write the report to {path}: {exc.strerror or exc}")
        return
    err.print(f"report written to {path}", highlight=False)


def _patterns(values: list[str] | None) -> tuple[str, ...]:
    return tuple(p.strip() for v in values or [] for p in v.split(",") if p.strip())


def _recalibrate(services: Services) -> None:
    """Re-run the knowledge base's self-calibration (after an ingest or sync changed it)."""
    from bot.calibration import calibrate_report, save

    report = calibrate_report(services.answers)
    save(services.data_dir / "calibration.json", services.index.count(), report)
    err.print(
        f"calibrated: decline below {report.policy.threshold:.3f} "
        f"(off-topic level {report.policy.off_dense:.3f}, on-topic {report.policy.on_dense:.3f})"
    )


@app.command()
def calibrate(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Re-run the knowledge base's self-calibration and print what it chose and why."""
    from dataclasses import asdict

    from bot.calibration import calibrate_report, save

    services = _services()
    count = services.index.count()
    report = calibrate_report(services.answers)
    save(services.data_dir / "calibration.json", count, report)
    if as_json:
        sys.stdout.write(json.dumps({**asdict(report), "chunks": count, "why": report.explain()}) + "\n")
        return
    out.print(f"calibrated a knowledge base of {count} chunks in {report.seconds:.1f}s")
    out.print(report.explain())


@app.command()
def ingest(
    targets: Annotated[list[str], typer.Argument(help="Files, folders (recursive) or URLs")],
    source: Annotated[str, typer.Option(help="Source name the documents belong to")] = "local",
    access: Annotated[str, typer.Option(help="Comma-separated access groups")] = "public",
    sync: Annotated[bool, typer.Option(help="Also remove documents that were under these targets and are gone")] = False,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (.gitignore style, e.g. '*.md'); repeatable")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Leave out files or folders matching this glob (e.g. 'drafts/'); repeatable")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write every file's outcome and reason to this JSON file")] = None,
) -> None:
    """Add or update knowledge from files and folders (unchanged documents cost nothing).

    Folders honour .gitignore and .supportbotignore files. Files whose type is unsupported,
    excluded or empty are counted as skipped; files that cannot be read as failed.
    """
    from knowledge.loaders import FileSelection

    services = _services()
    groups = tuple(g.strip() for g in access.split(",") if g.strip())
    select = FileSelection(include=_patterns(include), exclude=_patterns(exclude))
    raise typer.Exit(_ingest(services, targets, source, groups, sync, select, report))


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


def _emit_figures(figures: Mapping[str, float | int | None], as_json: bool) -> None:
    """Evaluation figures: exactly one JSON object on stdout with --json, else aligned lines."""
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    width = max(map(len, figures), default=0)
    for key, value in figures.items():
        out.print(f"{key:>{width}}  {value}")


def _print_answer(answer: Answer) -> None:
    style = "green" if answer.decision == Decision.ANSWERED else "yellow"
    out.print(answer.text, style=style, highlight=False)
    if answer.note:
        out.print(f"({answer.note})", style="dim")
    for c in answer.citations:
        where = " > ".join(dict.fromkeys(x for x in (c.title, *c.heading_path) if x)) or c.doc_id
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
            err.print(f"[red]error:[/red] cannot write {answers_out}: {exc.strerror or exc}")
            raise typer.Exit(2) from None
    try:
        with tempfile.TemporaryDirectory(prefix="supportbot-eval-") as tmp:
            services = _build_eval_services(dataset, tmp)
            services.answer_store.engine  # migrate before timing  # noqa: B018
            services.decline_policy()

            def record(q: Any, answer: Any) -> None:
                if sink is not None:
                    sink.write(json.dumps(answer_record(q, answer)) + "\n")

            figures = answer_figures(services.answers, load_queries(dataset), on_answer=record)
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
    _emit_figures(figures, as_json)


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
    from adapters.web.auth import check_admin_password

    services = _services()
    try:
        check_admin_password(services.settings)  # before anything starts
    except SupportbotError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=services.settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bind, number = host or services.settings.host, port or services.settings.port
    from adapters.teams.exposure import check_bind

    try:
        check_bind(services.settings, bind)  # before anything starts: the unauthenticated Teams mode is loopback-only
    except SupportbotError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.5, lambda: webbrowser.open(f"http://{bind}:{number}/")).start()
    import signal

    from adapters.embedded_redis import local_workers

    # uvicorn re-raises SIGTERM after its graceful shutdown; as SystemExit it unwinds through
    # local_workers, which then stops the embedded Redis and the worker instead of orphaning them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Without REDIS_URL: an embedded Redis and a worker run alongside, so /ingest works locally.
    with local_workers(services.settings) as settings:
        services = Services(settings) if settings is not services.settings else services
        try:
            web = create_app(services)
        except SupportbotError as exc:  # e.g. an admin password that is too short
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        uvicorn.run(web, host=bind, port=number, log_level=settings.log_level.lower())


# -- commands added by the chat adapters and the workers go below this line --


@app.command("slack")
def slack() -> None:
    """Run the Slack app in Socket Mode (needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN; no public URL)."""
    import logging

    from adapters.slack.socket import run_socket_mode

    services = _services()
    logging.basicConfig(level=services.settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_socket_mode(services)
    except SupportbotError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command("teams-package")
def teams_package(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the zip")] = Path("dist/supportbot-teams.zip"),
    bot_id: Annotated[str | None, typer.Option(help="The Azure Bot's app id (default: MicrosoftAppId)")] = None,
    app_id: Annotated[str | None, typer.Option(help="The Teams app id, a GUID (default: the bot id)")] = None,
    name: Annotated[str, typer.Option(help="The app's name in Teams (30 characters at most)")] = "Support Bot",
    version: Annotated[str, typer.Option(help="The app version; raise it for each re-upload")] = "1.0.0",
    developer: Annotated[str, typer.Option(help="Your organisation's name")] = "Your company",
    website_url: Annotated[str, typer.Option(help="https URL shown in the app details")] = "https://example.com",
    privacy_url: Annotated[str, typer.Option(help="https URL of the privacy statement")] = "https://example.com/privacy",
    terms_url: Annotated[str, typer.Option(help="https URL of the terms of use")] = "https://example.com/terms",
) -> None:
    """Build the Teams app package (manifest.json + icons) to upload in Teams or the admin center."""
    from adapters.teams.app_package import PackageInfo, build_package

    bot = bot_id or _services().settings.microsoft_app_id
    if not bot:
        err.print("[red]error:[/red] no bot id: set MicrosoftAppId (SUPPORTBOT_MICROSOFT_APP_ID) or pass --bot-id")
        raise typer.Exit(2)
    info = PackageInfo(bot_id=bot, app_id=app_id or "", name=name, version=version, developer=developer,
                       website_url=website_url, privacy_url=privacy_url, terms_url=terms_url)
    try:
        written = build_package(info, out_path)
    except SupportbotError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out.print(f"wrote {written} (bot {bot}); upload it in Teams: Apps > Manage your apps > Upload an app")


sources_app = typer.Typer(no_args_is_help=True, help="Sources kept in sync: folders, web sites, Confluence, Zendesk, GitHub, Notion.")
app.add_typer(sources_app, name="sources")


def _duration(text: str) -> int | None:
    """'90', '90s', '30m', '6h', '1d' -> seconds; '0', 'never' or 'manual' -> None."""
    text = text.strip().lower()
    if text in ("", "0", "never", "manual"):
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)
    except ValueError:
        err.print(f"[red]error:[/red] {text!r} is not a duration (e.g. 30m, 6h, 1d)")
        raise typer.Exit(2) from None


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="A short name; documents are filed under it")],
    kind: Annotated[str, typer.Argument(help="folder | web | confluence | zendesk | github | notion")],
    target: Annotated[str, typer.Argument(help="folder path, site URL or sitemap, Confluence/Zendesk URL, owner/repo")] = "",
    option: Annotated[list[str] | None, typer.Option("-o", "--option", help="key=value, e.g. space=DOCS, path=docs")] = None,
    every: Annotated[str, typer.Option(help="Sync interval (30m, 6h, 1d; 'manual' for on request only)")] = "6h",
    access: Annotated[str, typer.Option(help="Comma-separated access groups of its documents")] = "public",
) -> None:
    """Register a source to keep in sync (credentials come from the environment, never from here)."""
    from knowledge.connectors import KINDS, MAIN_OPTION

    services = _services()
    if kind not in KINDS:
        err.print(f"[red]error:[/red] unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
        raise typer.Exit(2)
    options: dict[str, str] = {}
    if target:
        options[MAIN_OPTION[kind]] = str(Path(target).resolve()) if kind == "folder" else target
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]error:[/red] option {item!r} must be key=value")
            raise typer.Exit(2)
        options[key.strip()] = value.strip()
    groups = [g.strip() for g in access.split(",") if g.strip()]
    try:
        probe = services.source_store.add(name, kind, options, access=groups, interval_s=_duration(every))
        services.connector(probe)  # validates the options (and fails early on a bad one)
    except SupportbotError as exc:
        existing = services.source_store.get(name)
        if existing is not None and "already exists" not in str(exc):
            services.source_store.remove(existing.id)
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out.print(f"added source {name} ({kind}); sync it now with: supportbot sources sync {name}")


@sources_app.command("list")
def sources_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the sources with their schedule, status, document count and last sync."""
    rows = _services().source_store.list()
    if as_json:
        sys.stdout.write(json.dumps([
            {"id": s.id, "name": s.name, "kind": s.kind, "options": dict(s.options), "interval_s": s.interval_s,
             "status": s.status, "documents": s.documents, "last_sync_at": s.last_sync_at and s.last_sync_at.isoformat(),
             "last_summary": s.last_summary, "last_error": s.last_error}
            for s in rows
        ]) + "\n")
        return
    if not rows:
        out.print("No sources yet. Add one: supportbot sources add docs folder ./docs")
    for s in rows:
        every = f"every {s.interval_s}s" if s.interval_s else "manual"
        when = f"{s.last_sync_at:%Y-%m-%d %H:%M}" if s.last_sync_at else "never synced"
        out.print(f"[bold]{s.name}[/bold] ({s.kind}, {every}) {s.status}, {s.documents} items, {when}", highlight=False)
        if s.last_summary:
            out.print(f"   {s.last_summary}", style="dim", highlight=False)
        if s.last_error:
            out.print(f"   [red]{s.last_error}[/red]", highlight=False)


def _sync_inline(services: Services, name: str) -> int:
    source = services.source_store.get(name)
    if source is None:
        err.print(f"[red]error:[/red] no source named {name!r} (see supportbot sources list)")
        return 2
    import uuid

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("items · {task.fields[rate]} ·"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
        console=err,
    ) as bar:
        task = bar.add_task(f"syncing {source.name}", total=None, rate="", current="")
        started = time.monotonic()

        def note(done: int, total: int | None, current: str) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            shown = current if len(current) <= 50 else "…" + current[-49:]
            bar.update(task, completed=done, total=total, rate=f"{rate:.1f}/s", current=shown)

        try:
            report = services.syncer.sync(source, services.connector(source), run_id=uuid.uuid4().hex, progress=note)
        except SupportbotError as exc:
            services.source_store.set_status(source.id, "failed", str(exc))
            err.print(f"[red]{source.name} failed:[/red] {exc}")
            return 1
    out.print(f"{source.name}: {report.summary()}", highlight=False)
    _print_left_out(report.left_out, report.failed, None, offer_report=False)
    if report.added or report.changed or report.removed:
        _recalibrate(services)
    return 0


@sources_app.command("sync")
def sources_sync(
    names: Annotated[list[str] | None, typer.Argument(help="Source names (default: all)")] = None,
    inline: Annotated[bool | None, typer.Option("--inline/--queue", help="Run here, or queue for the workers (default: queue when REDIS_URL is set)")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for queued syncs and show their progress")] = True,
) -> None:
    """Sync sources now: only new and changed documents are embedded, deleted ones are removed."""
    services = _services()
    chosen = names or [s.name for s in services.source_store.list()]
    run_here = inline if inline is not None else services.settings.redis_url is None
    if run_here:
        raise typer.Exit(max([_sync_inline(services, n) for n in chosen], default=0))
    queue = services.ingest_queue
    job_ids = {n: queue.enqueue_sync(n, requested_by="cli") for n in chosen}  # type: ignore[attr-defined]
    for name, job_id in job_ids.items():
        out.print(f"queued {name}: job {job_id}")
    if not wait:
        return
    failed = 0
    for name, job_id in job_ids.items():
        status = queue.status(job_id)
        while not status.finished:
            total = "?" if status.total is None else status.total
            rate = f" {status.rate:.1f}/s" if status.rate else ""
            eta = f" {_eta(status.eta_s)}" if status.total else ""
            err.print(f"{name}: {status.state} {status.done}/{total}{rate}{eta} {status.current}"[:200], end="\r")
            time.sleep(0.5)
            status = queue.status(job_id)
        if status.state == "failed":
            failed += 1
            err.print(f"[red]{name} failed:[/red] {status.error}")
        else:
            out.print(f"{name}: {status.summary}", highlight=False)
    raise typer.Exit(1 if failed else 0)


@sources_app.command("remove")
def sources_remove(
    name: str,
    keep_documents: Annotated[bool, typer.Option(help="Leave its documents in the index")] = False,
) -> None:
    """Forget a source and (unless --keep-documents) remove its documents from the index."""
    import uuid

    services = _services()
    source = services.source_store.get(name)
    if source is None:
        err.print(f"[red]error:[/red] no source named {name!r}")
        raise typer.Exit(2)
    removed = 0
    if not keep_documents:
        run_id = uuid.uuid4().hex
        ingestor = services.sync_ingestor
        ingestor.store.start_run(run_id, source.name)
        for doc_id, state in ingestor.store.states(source.name).items():
            if not state.deleted:
                ingestor.remove(doc_id, source.name, run_id)
                removed += 1
        ingestor.store.finish_run(run_id, f"removed source {source.name}: {removed} documents")
    services.source_store.remove(source.id)
    out.print(f"removed source {name}" + ("" if keep_documents else f" and {removed} documents"))


QUIET_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat", "alembic")
"""Loggers turned down to WARNING unless the worker runs at DEBUG."""


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Tasks run at once (processes)")] = 1,
    beat: Annotated[bool, typer.Option(help="Also run the scheduler (one per deployment!)")] = False,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run a Celery worker: ingests, source syncs and (with --beat) scheduled syncs. Needs REDIS_URL."""
    import logging

    try:
        from workers.app import app as celery_app
        from workers.app import settings
    except SupportbotError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if loglevel.upper() != "DEBUG":
        # Celery logs every task received and succeeded and every beat tick at INFO, and Alembic
        # each migration step: noise in a log that should show what needs attention.
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    if settings.embedder == "onnx":
        from adapters.providers.onnx_embedder import OnnxEmbedder

        embedder = Services(settings).embedder
        assert isinstance(embedder, OnnxEmbedder)
        try:
            embedder.prepare()  # before the pool forks: its processes then load the cached model
        except SupportbotError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    argv = [
        "worker", f"--concurrency={concurrency}", "--pool=prefork", f"--queues={settings.worker_queue}",
        f"--loglevel={loglevel.upper()}", "--without-gossip", "--without-mingle",
    ]
    if beat:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    celery_app.worker_main(argv)



# --- export (issue 17) ----------------------------------------------------------------------------
export_app = typer.Typer(no_args_is_help=True, help="Export what the team taught the bot.")
app.add_typer(export_app, name="export")


@export_app.command("finetune")
def export_finetune(
    file: Annotated[Path, typer.Argument(help="The JSONL file to write (- for stdout)")],
    format: Annotated[str, typer.Option("--format", help="Only `openai` (chat fine-tuning JSONL)")] = "openai",  # noqa: A002
    groups: Annotated[
        str, typer.Option("--groups", help="Access groups the fine-tuned model may learn from, comma-separated")
    ] = "public",
) -> None:
    """Verified answers and 👍-rated answers (question, cited passages, answer) as OpenAI chat
    fine-tuning JSONL, only those whose access groups are all within --groups."""
    from bot.verified import finetune_examples

    if format != "openai":
        err.print(f"[red]error:[/red] unknown --format {format!r}; the only format is `openai`")
        raise typer.Exit(2)
    allowed = frozenset(g.strip() for g in groups.split(",") if g.strip())
    if not allowed:
        err.print("[red]error:[/red] --groups needs at least one access group, e.g. --groups public")
        raise typer.Exit(2)
    services = _services()
    try:
        store = services.verified_store
        records = list(finetune_examples(store.records(with_uses=False), store.upvoted(), allowed))
    except SupportbotError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if str(file) == "-":
        sys.stdout.write(lines)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(lines, encoding="utf-8")
        err.print(f"wrote {len(records)} examples to {file} (access groups: {', '.join(sorted(allowed))})")
    if len(records) < 10:
        err.print("note: OpenAI fine-tuning needs at least 10 examples")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
