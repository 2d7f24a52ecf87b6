"""The ingest pipeline end to end on real files, a real index, a real embedder and SQLite."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.factory import Services
from adapters.settings import Settings
from bot.errors import ProviderUnavailable
from bot.identity import document_id
from bot.ports import Embedder, Matrix, Vector
from bot.types import UNRESTRICTED, SearchFilters
from knowledge.loaders import iter_documents
from knowledge.pipeline import Ingestor, embedding_text


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return Services(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]


def _docs(root: Path) -> Path:
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "remote.md").write_text(
        "# Remote\n\n## Pairing\n\nPress and hold Back and Play for three seconds to pair the remote.\n"
    )
    (root / "guide" / "billing.md").write_text("# Billing\n\n## Refunds\n\nEnterprise refunds take 30 days.\n")
    (root / "guide" / "wifi.txt").write_text("Restart the router when the TV cannot join Wi-Fi.\n")
    return root / "guide"


def _ingest(services: Services, folder: Path, *, sync: bool = False, access: tuple[str, ...] = ("public",)):
    return services.ingestor.ingest(
        iter_documents([folder], source="docs", access=access, max_bytes=1 << 20), source="docs", full_sync=sync
    )


def test_first_ingest_adds_and_search_finds_with_heading_path(services: Services, tmp_path: Path) -> None:
    report = _ingest(services, _docs(tmp_path))
    assert len(report.added) == 3 and not report.failed
    hit = services.retriever.search("how do I pair my remote", 1, UNRESTRICTED).passages[0]
    assert hit.chunk.title == "Remote"
    assert hit.chunk.heading_path[-1] == "Pairing"


def test_unchanged_reingest_embeds_nothing(services: Services, tmp_path: Path) -> None:
    folder = _docs(tmp_path)
    _ingest(services, folder)
    count = services.index.count()
    (folder / "wifi.txt").touch()  # a new mtime alone is not a change
    report = _ingest(services, folder)
    assert report.chunks_embedded == 0
    assert len(report.unchanged) == 3
    assert services.index.count() == count


def test_changed_document_replaces_its_chunks(services: Services, tmp_path: Path) -> None:
    folder = _docs(tmp_path)
    _ingest(services, folder)
    (folder / "billing.md").write_text("# Billing\n\n## Refunds\n\nRefunds now take 14 days for every plan.\n")
    report = _ingest(services, folder)
    assert len(report.changed) == 1 and len(report.unchanged) == 2
    texts = [p.chunk.text for p in services.retriever.search("refunds days", 5, UNRESTRICTED).passages]
    assert any("14 days" in t for t in texts)
    assert not any("30 days" in t for t in texts)


def test_sync_removes_documents_gone_from_the_source(services: Services, tmp_path: Path) -> None:
    folder = _docs(tmp_path)
    _ingest(services, folder)
    (folder / "wifi.txt").unlink()
    report = _ingest(services, folder, sync=True)
    assert len(report.removed) == 1
    hits = services.retriever.search("router Wi-Fi", 5, UNRESTRICTED).passages
    assert all("router" not in p.chunk.text for p in hits)


def test_rollback_restores_the_previous_version(services: Services, tmp_path: Path) -> None:
    folder = _docs(tmp_path)
    _ingest(services, folder)
    (folder / "billing.md").write_text("# Billing\n\nRefunds are no longer offered.\n")
    (folder / "new.md").write_text("# New\n\nA brand new page about HDMI ports.\n")
    _ingest(services, folder)
    restored = services.ingestor.rollback()
    assert len(restored) == 2
    texts = {p.chunk.text for p in services.retriever.search("refunds HDMI", 10, UNRESTRICTED).passages}
    assert any("30 days" in t for t in texts)
    assert not any("no longer" in t or "HDMI" in t for t in texts)


def test_bad_files_do_not_stop_the_batch(services: Services, tmp_path: Path) -> None:
    folder = _docs(tmp_path)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (folder / "empty.md").write_text("")
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 10)
    report = _ingest(services, folder)
    assert len(report.added) == 3
    reasons = dict(report.failed)  # could not be read: a failure
    assert len(reasons) == 1 and "broken.pdf" in next(iter(reasons)) and "PDF" in next(iter(reasons.values()))
    skipped = dict(report.skipped)  # left out on purpose: not a failure
    assert all(any(name in path for path in skipped) for name in ("empty.md", "blob.bin"))
    assert "skipped 2, failed 1" in report.summary()


def test_access_groups_are_carried_to_the_index(services: Services, tmp_path: Path) -> None:
    folder = _docs(tmp_path)
    _ingest(services, folder, access=("staff",))
    public = services.retriever.search("pair the remote", 5, SearchFilters()).passages
    staff = services.retriever.search("pair the remote", 5, SearchFilters(groups=frozenset({"staff"}))).passages
    assert public == ()
    assert staff and staff[0].chunk.access == ("staff",)


def test_queries_never_see_half_a_replaced_document(services: Services, tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    version = {"n": 0}

    def write(n: int) -> None:
        paras = "\n\n".join(f"Version {n} paragraph {i} about the remote pairing steps." for i in range(40))
        (folder / "doc.md").write_text(f"# Doc\n\n{paras}\n")

    write(0)
    services.ingestor.ingest(iter_documents([folder], source="s", max_bytes=1 << 20), source="s")
    seen_mixed: list[set[str]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            hits = services.index.keyword_search("version paragraph remote", 200, UNRESTRICTED)
            versions = {h.chunk.text.split()[1] for h in hits}
            if len(versions) > 1:
                seen_mixed.append(versions)

    t = threading.Thread(target=reader)
    t.start()
    for n in range(1, 6):
        version["n"] = n
        write(n)
        services.ingestor.ingest(iter_documents([folder], source="s", max_bytes=1 << 20), source="s")
    stop.set()
    t.join()
    assert seen_mixed == []


class _FailingAfter:
    """The real embedder, until ``calls`` batches have been embedded; then unavailable."""

    def __init__(self, inner: Embedder, calls: int) -> None:
        self.inner, self.calls, self.name, self.dimension = inner, calls, inner.name, inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> Matrix:
        if self.calls == 0:
            raise ProviderUnavailable("embedder down")
        self.calls -= 1
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> Vector:
        return self.inner.embed_query(text)


def _many(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        (root / f"d{i:02d}.md").write_text(f"# Topic {i}\n\nStep {i}: hold the button for {i} seconds.\n")
    return root


def test_pipelined_batches_write_every_document_in_order_with_its_own_vectors(
    services: Services, tmp_path: Path
) -> None:
    folder = _many(tmp_path / "many", 9)
    ingestor = Ingestor(services.embedder, services.index, services.document_store, batch_chunks=2)
    notes: list[str] = []
    report = ingestor.ingest(
        iter_documents([folder], source="m", max_bytes=1 << 20), source="m", progress=lambda d, _o: notes.append(d)
    )
    assert len(report.added) == 9 and report.chunks_embedded == 9
    read = [document_id("m", (folder / f"d{i:02d}.md").as_uri()) for i in range(9)]
    assert notes == read  # written in the order they were read
    for i in (0, 4, 8):
        hit = services.index.keyword_search(f"Topic {i}", 1, UNRESTRICTED)[0]
        own = services.embedder.embed_documents([embedding_text(hit.chunk)])[0]
        nearest = services.index.dense_search(own, 1, UNRESTRICTED)[0]  # each chunk got its own vector
        assert nearest.chunk.id == hit.chunk.id and nearest.score > 0.999


def test_an_embedder_failing_mid_ingest_keeps_what_was_written_and_the_next_ingest_finishes(
    services: Services, tmp_path: Path
) -> None:
    folder = _many(tmp_path / "many", 6)
    flaky = _FailingAfter(services.embedder, calls=1)
    ingestor = Ingestor(flaky, services.index, services.document_store, batch_chunks=2)
    with pytest.raises(ProviderUnavailable):
        ingestor.ingest(iter_documents([folder], source="m", max_bytes=1 << 20), source="m")
    assert services.index.count() == 2  # the first batch, whole; nothing of the failed ones
    flaky.calls = 100
    report = ingestor.ingest(iter_documents([folder], source="m", max_bytes=1 << 20), source="m")
    assert len(report.unchanged) == 2 and len(report.added) == 4
    assert services.index.count() == 6


def test_cli_ingest_search_and_eval_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from adapters.cli import app

    folder = _docs(tmp_path)
    env = {"SUPPORTBOT_DATA_DIR": str(tmp_path / "cli-data")}
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(folder)], env=env)
    assert result.exit_code == 0, result.output
    assert "added 3" in result.output
    result = runner.invoke(app, ["search", "--json", "pair the remote"], env=env)
    assert json.loads(result.stdout)[0]["title"] == "Remote"

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "\n".join(
            json.dumps({"_id": f"d{i}", "title": t, "text": x})
            for i, (t, x) in enumerate([("Remote", "Hold Back and Play to pair."), ("Refunds", "Refunds take 30 days.")])
        )
    )
    (beir / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "how to pair remote"}) + "\n" + json.dumps({"_id": "q2", "text": "refund time"})
    )
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td1\t1\n")
    result = runner.invoke(app, ["eval", "retrieval", str(beir), "--json"], env=env)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert set(figures) == {"ndcg@10", "recall@10", "recall@50", "mrr@10", "queries", "p50_ms", "p95_ms"}
    assert figures["queries"] == 2 and figures["ndcg@10"] == 1.0


def test_cli_calibrate_prints_what_it_chose_and_ingest_stores_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from adapters.cli import app

    folder = _docs(tmp_path)
    data = tmp_path / "cal-data"
    env = {"SUPPORTBOT_DATA_DIR": str(data)}
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(folder)], env=env)
    assert result.exit_code == 0, result.output
    stored = json.loads((data / "calibration.json").read_text())  # calibrated after the ingest
    assert stored["count"] > 0 and "threshold" in stored["policy"] and stored["why"]
    result = runner.invoke(app, ["calibrate", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert report["chunks"] == stored["count"]
    assert report["policy"] == stored["policy"]  # deterministic for the same index
    assert 0.0 < report["policy"]["threshold"] < 1.0 and report["offtopic"] > 0
    result = runner.invoke(app, ["calibrate"], env=env)
    assert result.exit_code == 0 and "decline threshold" in result.stdout and "off-topic" in result.stdout
