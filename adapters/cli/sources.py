"""``sources add|list|sync|remove``: sources the workers keep in sync."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from adapters.cli.common import err, eta, fail, out, report_error, services
from adapters.cli.ingest import print_left_out, recalibrate

if TYPE_CHECKING:
    from adapters.factory import Services

sources_app = typer.Typer(no_args_is_help=True, help="Sources kept in sync: folders, web sites, Confluence, Zendesk, GitHub, Notion.")


def _duration(text: str) -> int | None:
    """'90', '90s', '30m', '6h', '1d' -> seconds; '0', 'never' or 'manual' -> None."""
    text = text.strip().lower()
    if text in ("", "0", "never", "manual"):
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)
    except ValueError:
        fail(f"{text!r} is not a duration (e.g. 30m, 6h, 1d)")


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
    from bot.errors import SupportbotError
    from knowledge.connectors import KINDS, MAIN_OPTION

    built = services()
    if kind not in KINDS:
        fail(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    options: dict[str, str] = {}
    if target:
        options[MAIN_OPTION[kind]] = str(Path(target).resolve()) if kind == "folder" else target
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"option {item!r} must be key=value")
        options[key.strip()] = value.strip()
    groups = [g.strip() for g in access.split(",") if g.strip()]
    try:
        probe = built.source_store.add(name, kind, options, access=groups, interval_s=_duration(every))
        built.connector(probe)  # validates the options (and fails early on a bad one)
    except SupportbotError as exc:
        existing = built.source_store.get(name)
        if existing is not None and "already exists" not in str(exc):
            built.source_store.remove(existing.id)
        fail(exc)
    out.print(f"added source {name} ({kind}); sync it now with: supportbot sources sync {name}")


@sources_app.command("list")
def sources_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the sources with their schedule, status, document count and last sync."""
    rows = services().source_store.list()
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


def _sync_inline(built: Services, name: str) -> int:
    source = built.source_store.get(name)
    if source is None:
        report_error(f"no source named {name!r} (see supportbot sources list)")
        return 2
    import uuid

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bot.errors import SupportbotError

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
            report = built.syncer.sync(source, built.connector(source), run_id=uuid.uuid4().hex, progress=note)
        except SupportbotError as exc:
            built.source_store.set_status(source.id, "failed", str(exc))
            err.print(f"[red]{source.name} failed:[/red] {exc}")
            return 1
    out.print(f"{source.name}: {report.summary()}", highlight=False)
    print_left_out(report.left_out, report.failed, None, offer_report=False)
    if report.added or report.changed or report.removed:
        recalibrate(built)
    return 0


@sources_app.command("sync")
def sources_sync(
    names: Annotated[list[str] | None, typer.Argument(help="Source names (default: all)")] = None,
    inline: Annotated[bool | None, typer.Option("--inline/--queue", help="Run here, or queue for the workers (default: queue when REDIS_URL is set)")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for queued syncs and show their progress")] = True,
) -> None:
    """Sync sources now: only new and changed documents are embedded, deleted ones are removed."""
    built = services()
    chosen = names or [s.name for s in built.source_store.list()]
    run_here = inline if inline is not None else built.settings.redis_url is None
    if run_here:
        raise typer.Exit(max([_sync_inline(built, n) for n in chosen], default=0))
    queue = built.ingest_queue
    # enqueue_sync is on the IngestQueue port (bot/ports.py) since issue 15.
    job_ids = {n: queue.enqueue_sync(n, requested_by="cli") for n in chosen}
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
            eta_text = f" {eta(status.eta_s)}" if status.total else ""
            err.print(f"{name}: {status.state} {status.done}/{total}{rate}{eta_text} {status.current}"[:200], end="\r")
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
    built = services()
    source = built.source_store.get(name)
    if source is None:
        fail(f"no source named {name!r}")
    removed = 0 if keep_documents else len(built.sync_ingestor.remove_source(source.name))
    built.source_store.remove(source.id)
    out.print(f"removed source {name}" + ("" if keep_documents else f" and {removed} documents"))
