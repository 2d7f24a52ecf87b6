"""Running the knowledge base day to day: skipped vs failed, file selection, text by content,
ignore files, progress a person can follow, and the `supportbot ingest` command on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import SourceError, SourceSkipped
from bot.types import Document
from knowledge.loaders import FileSelection, file_kind, iter_documents, walk_files
from knowledge.progress import IngestProgress

MB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent


def write(root: Path, rel: str, data: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def outcomes(items: list[Document | SourceError], root: Path | None = None) -> tuple[list[str], dict[str, str], dict[str, str]]:
    docs = [f"{i.source}:{_relative(i.url, root)}" for i in items if isinstance(i, Document)]
    skipped = {Path(i.path).name: i.reason for i in items if isinstance(i, SourceSkipped)}
    failed = {
        Path(i.path).name: i.reason for i in items if isinstance(i, SourceError) and not isinstance(i, SourceSkipped)
    }
    return docs, skipped, failed


def _relative(url: str, root: Path | None) -> str:
    from urllib.parse import unquote, urlsplit

    path = Path(unquote(urlsplit(url).path))
    return path.relative_to(root).as_posix() if root is not None else path.name


def test_text_files_without_a_text_extension_are_read_by_content(tmp_path: Path) -> None:
    debian = write(tmp_path, "README.Debian", "Notes on the Debian packaging of this tool.\n")
    p4 = write(tmp_path, "git-p4.README", "git-p4 imports from Perforce depots.\n")
    page = write(tmp_path, "index.page", "<!DOCTYPE html><html><body><main><p>Hello page.</p></main></body></html>")
    blob = write(tmp_path, "data.bin2", bytes(range(256)) * 8)
    assert file_kind(debian) == file_kind(p4) == "text"
    assert file_kind(page) == "html"
    assert file_kind(blob) is None
    assert file_kind(write(tmp_path, "logo.png", "not really a png")) is None  # a known binary type
    docs, skipped, failed = outcomes(list(iter_documents([tmp_path], source="kb", max_bytes=MB)), tmp_path)
    assert {"kb:README.Debian", "kb:git-p4.README"} <= set(docs)
    assert skipped == {"data.bin2": "unsupported file type .bin2", "logo.png": "unsupported file type .png"}
    assert failed == {}


def test_skipped_and_failed_are_told_apart_with_reasons(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "# A\n\nAlpha.\n")
    write(tmp_path, "empty.txt", "")
    write(tmp_path, "logo.png", b"\x89PNG\r\n\x00")
    write(tmp_path, "broken.pdf", b"%PDF-1.4 nope")
    docs, skipped, failed = outcomes(list(iter_documents([tmp_path], source="kb", max_bytes=MB)), tmp_path)
    assert docs == ["kb:a.md"]
    assert skipped == {"empty.txt": "empty file", "logo.png": "unsupported file type .png"}
    assert list(failed) == ["broken.pdf"] and failed["broken.pdf"].startswith("not a readable PDF")


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    write(tmp_path, "guide.md", "# Guide\n\nText.\n")
    write(tmp_path, "notes.txt", "Notes.\n")
    write(tmp_path, "drafts/wip.md", "# WIP\n\nDraft.\n")
    write(tmp_path, "api/deep/ref.md", "# Ref\n\nReference.\n")
    select = FileSelection(include=("*.md",), exclude=("drafts/",))
    entries = {e.path.relative_to(tmp_path).as_posix(): e.skip for e in walk_files([tmp_path], select)}
    assert entries == {
        "drafts": "excluded by --exclude",  # the folder is one entry: its files are not walked
        "api/deep/ref.md": "",
        "guide.md": "",
        "notes.txt": "not matched by --include",
    }
    docs, skipped, _ = outcomes(list(iter_documents([tmp_path], source="kb", max_bytes=MB, select=select)), tmp_path)
    assert sorted(docs) == ["kb:api/deep/ref.md", "kb:guide.md"]
    assert skipped == {"drafts": "excluded by --exclude", "notes.txt": "not matched by --include"}


def test_gitignore_style_ignore_files_apply_below_their_folder(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "build/\n*.log.txt\n")
    write(tmp_path, "a.md", "# A\n\nAlpha.\n")
    write(tmp_path, "build/out.md", "# Built\n\nGenerated.\n")
    write(tmp_path, "run.log.txt", "log line\n")
    write(tmp_path, "sub/.supportbotignore", "private.md\n!keep.md\n")
    write(tmp_path, "sub/private.md", "# Private\n\nSecret plans.\n")
    write(tmp_path, "sub/keep.md", "# Keep\n\nKept.\n")
    write(tmp_path, "other/private.md", "# Other\n\nNot under sub, so not ignored.\n")
    docs, skipped, _ = outcomes(list(iter_documents([tmp_path], source="kb", max_bytes=MB)), tmp_path)
    assert sorted(docs) == ["kb:a.md", "kb:other/private.md", "kb:sub/keep.md"]
    assert skipped == {
        "build": "ignored by .gitignore",
        "run.log.txt": "ignored by .gitignore",
        "private.md": "ignored by .supportbotignore",
    }
    none = FileSelection(ignore_files=())
    all_docs, _, _ = outcomes(list(iter_documents([tmp_path], source="kb", max_bytes=MB, select=none)), tmp_path)
    assert "kb:build/out.md" in all_docs and "kb:sub/private.md" in all_docs


def test_progress_counts_files_and_chunks_and_gives_an_eta() -> None:
    p = IngestProgress(files_total=10)
    assert p.eta_s() is None and p.chunks_expected() is None
    for i in range(5):
        p.file(f"f{i}")
    p.chunks_found = 50
    assert p.chunks_expected() == 100  # extrapolated over the files not read yet
    assert p.eta_s() is None  # nothing embedded yet: no rate
    p.chunks_embedded = 25
    p.started -= 5.0  # 25 chunks in 5 s
    eta = p.eta_s()
    assert eta is not None and 14 < eta < 16  # 75 chunks left at 5 chunks/s
    p.files_done, p.chunks_found, p.chunks_embedded = 10, 100, 100
    assert p.eta_s() == 0


def test_pipeline_reports_skipped_apart_and_tracks_chunks(tmp_path: Path) -> None:
    from adapters.factory import Services
    from adapters.settings import Settings

    docs = tmp_path / "docs"
    for i in range(3):
        write(docs, f"d{i}.md", f"# Topic {i}\n\nThe refund window for plan {i} is {i + 10} days.\n")
    write(docs, "empty.md", "")
    write(docs, "broken.pdf", b"%PDF-1.4 nope")
    services = Services(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    tracker = IngestProgress(files_total=5)
    report = services.ingestor.ingest(
        iter_documents([docs], source="kb", max_bytes=MB, progress=tracker), source="kb", tracker=tracker
    )
    assert len(report.added) == 3
    assert [Path(p).name for p, _ in report.skipped] == ["empty.md"]
    assert [Path(p).name for p, _ in report.failed] == ["broken.pdf"]
    assert "skipped 1, failed 1" in report.summary()
    assert tracker.files_done == 5 and tracker.chunks_found == tracker.chunks_embedded == 3


def test_folder_source_honours_include_exclude_and_ignore_files(tmp_path: Path) -> None:
    from knowledge.connectors.base import ConnectorContext
    from knowledge.connectors.folder import FolderConnector
    from knowledge.fetch import Fetcher

    write(tmp_path, ".supportbotignore", "secret/\n")
    write(tmp_path, "a.md", "# A\n\nAlpha.\n")
    write(tmp_path, "b.txt", "Beta.\n")
    write(tmp_path, "README.Debian", "Debian notes.\n")
    write(tmp_path, "drafts/c.md", "# C\n\nDraft.\n")
    write(tmp_path, "secret/d.md", "# D\n\nSecret.\n")
    fetcher = Fetcher()

    def listed(**options: str) -> list[str]:
        ctx = ConnectorContext("kb", {"path": str(tmp_path), **options}, fetcher)
        return [i.external_id for i in FolderConnector(ctx).items()]

    assert sorted(listed()) == ["README.Debian", "a.md", "b.txt", "drafts/c.md"]
    assert sorted(listed(include="*.md,*.txt", exclude="drafts/")) == ["a.md", "b.txt"]
    assert "secret/d.md" in listed(ignore_files="")


# --- the command, on real files, in a real process ---------------------------------------------------


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_") and not k.endswith("REDIS_URL")}
    env.update(SUPPORTBOT_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_cli_ingest_progress_summary_and_report(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    write(kb, "vpn.md", "# VPN\n\nTo connect to the VPN, open the client and sign in.\n")
    write(kb, "README.Debian", "The Debian package installs the client in /usr/bin.\n")
    write(kb, "drafts/wip.md", "# WIP\n\nNot ready.\n")
    write(kb, "notes.log", "just a log\n")
    write(kb, "logo.png", b"\x89PNG\r\n\x00\x00")
    write(kb, "empty.txt", "")
    write(kb, "broken.pdf", b"%PDF-1.4 nope")
    report = tmp_path / "report.json"
    run = cli(tmp_path, "ingest", str(kb), "--exclude", "drafts/", "--exclude", "*.log", "--report", str(report))
    assert run.returncode == 0, run.stderr
    assert "added 2, changed 0, unchanged 0, removed 0, skipped 4, failed 1" in run.stdout
    # The bar has a total of files counted up front, a rate and an ETA.
    assert "7/7 files" in run.stderr and "chunks/s" in run.stderr and "ETA" in run.stderr
    assert "failed" in run.stderr and "broken.pdf: not a readable PDF" in run.stderr
    assert "skipped 4:" in run.stderr and "unsupported file type .png" in run.stderr
    body = json.loads(report.read_text())
    assert sorted(a.rsplit("/", 1)[-1] for a in body["added"]) == ["README.Debian", "vpn.md"]
    reasons = {Path(s["path"]).name: s["reason"] for s in body["skipped"]}
    assert reasons == {
        "drafts": "excluded by --exclude",
        "notes.log": "excluded by --exclude",
        "logo.png": "unsupported file type .png",
        "empty.txt": "empty file",
    }
    assert [Path(f["path"]).name for f in body["failed"]] == ["broken.pdf"]

    only = cli(tmp_path, "ingest", str(kb), "--include", "*.md", "--exclude", "drafts/")
    assert only.returncode == 0, only.stderr
    assert "unchanged 1" in only.stdout and "added 0" in only.stdout


def test_cli_ingest_of_nothing_readable_fails(tmp_path: Path) -> None:
    run = cli(tmp_path, "ingest", str(tmp_path / "missing"))
    assert run.returncode == 1
    assert "no such file or directory" in run.stderr


@pytest.mark.parametrize("name", ["README.Debian", "git-p4.README"])
def test_cli_reads_text_files_by_content(tmp_path: Path, name: str) -> None:
    write(tmp_path / "kb", name, "Perforce depots are imported with git-p4 clone.\n")
    run = cli(tmp_path, "ingest", str(tmp_path / "kb"))
    assert run.returncode == 0 and "added 1" in run.stdout, run.stderr


def test_production_extras_bring_the_postgres_driver_and_flower() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("psycopg[binary]") for r in extras["postgres"])  # `pip install supportbot[postgres]`
    assert any(r.startswith("flower") for r in extras["flower"])
