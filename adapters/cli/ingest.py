"""``ingest``, ``rollback`` and ``calibrate``: putting knowledge in, taking it back, re-tuning declines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from adapters.cli.common import err, eta, out, report_error, services

if TYPE_CHECKING:
    from adapters.factory import Services
    from bot.errors import SourceError
    from bot.types import Document, IngestReport
    from knowledge.loaders import FileSelection


def calibrate(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Re-run the knowledge base's self-calibration and print what it chose and why."""
    from dataclasses import asdict

    from bot.calibration import calibrate_report, save

    built = services()
    count = built.index.count()
    report = calibrate_report(built.answers)
    save(built.data_dir / "calibration.json", count, report)
    if as_json:
        sys.stdout.write(json.dumps({**asdict(report), "chunks": count, "why": report.explain()}) + "\n")
        return
    out.print(f"calibrated a knowledge base of {count} chunks in {report.seconds:.1f}s")
    out.print(report.explain())


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

    built = services()
    groups = tuple(g.strip() for g in access.split(",") if g.strip())
    select = FileSelection(include=_patterns(include), exclude=_patterns(exclude))
    raise typer.Exit(run_ingest(built, targets, source, groups, sync, select, report))


def rollback(run: Annotated[str | None, typer.Option(help="Ingest run id (default: the last)")] = None) -> None:
    """Undo the last ingest: every document it touched returns to its previous version."""
    restored = services().ingestor.rollback(run)
    out.print(f"rolled back {len(restored)} documents" if restored else "nothing to roll back")


def run_ingest(
    built: Services,
    targets: list[str],
    source: str,
    access: tuple[str, ...],
    sync: bool,
    select: FileSelection | None = None,
    report_path: Path | None = None,
) -> int:
    """Ingest ``targets`` with a progress bar, print the summary; the command's exit code."""
    from rich.progress import BarColumn, Progress, TextColumn

    from knowledge.loaders import ALL_FILES, iter_documents, walk_files
    from knowledge.progress import IngestProgress

    max_bytes = int(built.settings.max_file_mb * 1024 * 1024)
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
                eta=eta(tracker.eta_s()),
                current=current if len(current) <= 60 else "…" + current[-59:],
            )

        def documents() -> Iterator[Document | SourceError]:
            # URLs first (each counts as one file), then the counted files.
            if urls:
                from knowledge.sources import target_documents

                yield from target_documents(
                    urls, fetcher=built.fetcher, source=source, access=access, max_bytes=max_bytes, progress=tracker
                )
            if entries:
                yield from iter_documents(entries, source=source, access=access, max_bytes=max_bytes, progress=tracker)

        report = built.ingestor.ingest(
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
    print_left_out(report.skipped, report.failed, report_path)
    if report_path is not None:
        _write_report(report_path, report)
    if report.added or report.changed or report.removed:
        recalibrate(built)
    return 1 if report.failed and not (report.added or report.changed or report.unchanged) else 0


def _location(path: Path) -> str:
    """The url prefix of a file's documents (its file URI), or of a folder's (its URI and a slash)."""
    import os

    uri = Path(os.path.abspath(path)).as_uri()
    return uri.rstrip("/") + "/" if path.is_dir() else uri


def print_left_out(
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
        report_error(f"cannot write the report to {path}: {exc.strerror or exc}")
        return
    err.print(f"report written to {path}", highlight=False)


def _patterns(values: list[str] | None) -> tuple[str, ...]:
    return tuple(p.strip() for v in values or [] for p in v.split(",") if p.strip())


def recalibrate(built: Services) -> None:
    """Re-run the knowledge base's self-calibration (after an ingest or sync changed it)."""
    from bot.calibration import calibrate_report, save

    report = calibrate_report(built.answers)
    save(built.data_dir / "calibration.json", built.index.count(), report)
    err.print(
        f"calibrated: decline below {report.policy.threshold:.3f} "
        f"(off-topic level {report.policy.off_dense:.3f}, on-topic {report.policy.on_dense:.3f})"
    )
