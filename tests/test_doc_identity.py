"""Document identity is (source, full location): no silent loss at ingest, and old indexes migrate.

Issue 14 item 2: ``supportbot ingest teamA teamB`` with an ``index.md`` in each kept one
document, and ingesting teamB later replaced Team A's page. Everything here runs the real
loaders, embedder, SQLite index and SQL stores (SQLite and PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from adapters.db import make_engine
from adapters.factory import Services
from adapters.settings import Settings
from bot.identity import corpus_id, document_id
from bot.ports import ChunkIndex
from bot.serialize import answer_to_dict
from bot.types import UNRESTRICTED, Answer, Citation, Decision, Document, Question, chunk_to_dict
from knowledge.chunking import chunk_document
from knowledge.loaders import iter_documents, load_bytes
from knowledge.pipeline import Ingestor, embedding_text


def _teams(root: Path) -> tuple[Path, Path]:
    a, b = root / "teamA", root / "teamB"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "index.md").write_text("# Team A\n\nTeam A handles invoices: email billing at extension 4410.\n")
    (b / "index.md").write_text("# Team B\n\nTeam B handles laptops: the helpdesk swaps broken screens.\n")
    return a, b


def _texts(services: Services, query: str) -> list[str]:
    return [p.chunk.text for p in services.index.keyword_search(query, 10, UNRESTRICTED)]


# --- two folders, same file names ---------------------------------------------------------------


def test_cli_two_folders_with_the_same_file_names_keep_both_and_reingesting_one_never_touches_the_other(
    tmp_path: Path,
) -> None:
    from adapters.cli import app

    team_a, team_b = _teams(tmp_path / "kb")
    env = {"SUPPORTBOT_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(team_a), str(team_b)], env=env)
    assert result.exit_code == 0, result.output
    assert "added 2, changed 0" in result.output

    services = Services(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    hits = services.index.keyword_search("Team handles", 10, UNRESTRICTED)
    assert {h.chunk.doc_id for h in hits} == {
        document_id("local", (team_a / "index.md").as_uri()),
        document_id("local", (team_b / "index.md").as_uri()),
    }

    # Team B's page changes: only it changes, Team A's page is untouched.
    (team_b / "index.md").write_text("# Team B\n\nTeam B handles laptops and phones now.\n")
    result = runner.invoke(app, ["ingest", str(team_b)], env=env)
    assert result.exit_code == 0, result.output
    assert "added 0, changed 1, unchanged 0, removed 0" in result.output
    assert "replaced" not in result.output
    assert any("extension 4410" in t for t in _texts(services, "invoices extension"))

    # --sync of Team B removes what left Team B, and nothing of Team A (same source "local").
    (team_b / "old.md").write_text("# Old\n\nAn old laptop policy.\n")
    assert "added 1" in runner.invoke(app, ["ingest", str(team_b)], env=env).output
    (team_b / "old.md").unlink()
    result = runner.invoke(app, ["ingest", "--sync", str(team_b)], env=env)
    assert result.exit_code == 0, result.output
    assert "unchanged 1, removed 1" in result.output
    assert any("extension 4410" in t for t in _texts(services, "invoices extension"))
    assert not any("old laptop policy" in t for t in _texts(services, "old laptop policy"))

    # A --sync of one file of Team A leaves the rest of Team A alone too.
    (team_a / "more.md").write_text("# More\n\nMore about invoices.\n")
    assert "added 1" in runner.invoke(app, ["ingest", str(team_a)], env=env).output
    result = runner.invoke(app, ["ingest", "--sync", str(team_a / "index.md")], env=env)
    assert "unchanged 1, removed 0" in result.output


def test_sync_scope_and_a_failed_file_keep_documents(tmp_path: Path) -> None:
    services = Services(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    team_a, team_b = _teams(tmp_path / "kb")
    (team_b / "faq.md").write_text("# FAQ\n\nScreens are swapped within a day.\n")

    def ingest(*folders: Path, sync: bool = False):  # type: ignore[no-untyped-def]
        return services.ingestor.ingest(
            iter_documents(list(folders), source="kb", max_bytes=1 << 20),
            source="kb",
            full_sync=sync,
            scope=[f.as_uri() + "/" for f in folders],
        )

    assert len(ingest(team_a, team_b).added) == 3
    (team_b / "faq.md").write_bytes(b"<!-- -->")  # now fails to load ("no text found"): kept, not removed
    report = ingest(team_b, sync=True)
    assert report.removed == () and len(report.failed) == 1
    (team_b / "faq.md").unlink()
    report = ingest(team_b, sync=True)
    assert report.removed == (document_id("kb", (team_b / "faq.md").as_uri()),)
    assert len(services.document_store.states("kb")) == 3  # the removal is a version, for rollback
    assert any("extension 4410" in t for t in _texts(services, "invoices extension"))


# --- replacements are reported -------------------------------------------------------------------


def test_the_summary_reports_a_document_replaced_by_one_from_another_place(tmp_path: Path) -> None:
    services = Services(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    [page] = load_bytes(b"# Returns\n\nReturns take 30 days.\n", name="a.md", url="https://kb.test/a", source="web")
    assert page.id == "web:https://kb.test/a"
    assert services.ingestor.ingest([page], source="web").replaced == ()

    # The same id from another place (a connector whose ids are not its URLs, say): replaced, said so.
    moved = dataclasses.replace(
        load_bytes(b"# Returns\n\nReturns take 14 days.\n", name="b.md", url="https://kb.test/b", source="web")[0],
        id=page.id,
    )
    report = services.ingestor.ingest([moved], source="web")
    assert report.changed == (page.id,)
    assert report.replaced == (("https://kb.test/a", "https://kb.test/b"),)
    assert "replaced 1: https://kb.test/a by https://kb.test/b" in report.summary()

    # The same place with new content is a change, not a replacement.
    [again] = load_bytes(b"# Returns\n\nReturns take 7 days.\n", name="b.md", url="https://kb.test/b", source="web")
    report = services.ingestor.ingest([dataclasses.replace(again, id=page.id)], source="web")
    assert report.changed == (page.id,) and report.replaced == () and "replaced" not in report.summary()


def test_two_different_documents_with_one_id_in_one_ingest_are_reported_not_dropped(tmp_path: Path) -> None:
    services = Services(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"_id": "r1", "title": "One", "text": "First row."}, {"_id": "r1", "title": "Two", "text": "Second."}]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = services.ingestor.ingest(iter_documents([corpus], source="c", max_bytes=1 << 20), source="c")
    assert len(report.added) == 1
    [(where, reason)] = report.failed
    assert where == f"{corpus}#r1" and "same document id" in reason and "failed 1" in report.summary()

    # The same file given twice is one document: nothing to report.
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nAlpha.\n")
    report = services.ingestor.ingest(
        iter_documents([folder, folder / "a.md"], source="k", max_bytes=1 << 20), source="k"
    )
    assert len(report.added) == 1 and report.failed == ()


def test_jsonl_rows_are_identified_by_file_and_id_and_evaluation_sees_the_id(tmp_path: Path) -> None:
    services = Services(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    for name, text in (("one", "Routers reboot at night."), ("two", "Printers jam on thick paper.")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "", "text": text}) + "\n")
    report = services.ingestor.ingest(
        iter_documents([tmp_path / "one", tmp_path / "two"], source="eval", max_bytes=1 << 20), source="eval"
    )
    assert len(report.added) == 2  # the same _id in two corpora: two documents
    assert {corpus_id(d) for d in report.added} == {"d1"}
    hit = services.index.keyword_search("printers jam", 1, UNRESTRICTED)[0]
    assert corpus_id(hit.chunk.doc_id) == "d1" and "Printers" in hit.chunk.text


# --- migration of an index written with the old ids ------------------------------------------------


def _old_database(url: str) -> sa.Engine:
    """A database at the schema before document identity (Alembic revision 0004)."""
    from alembic import command
    from alembic.config import Config

    from adapters.db import MIGRATIONS

    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
    return engine


def _write_old(
    services: Services, engine: sa.Engine, doc: Document, old_id: str, at: datetime, index: ChunkIndex | None = None
) -> list[str]:
    """Index ``doc`` under ``old_id`` and record its version as the code before 0006 did."""
    s = services.settings
    doc = dataclasses.replace(doc, id=old_id)
    chunks = chunk_document(doc, size=s.chunk_size, overlap=s.chunk_overlap)
    vectors = services.embedder.embed_documents([embedding_text(c) for c in chunks])
    (index or services.index).replace(old_id, chunks, vectors)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO doc_versions (doc_id, version, source, run_id, content_hash, embedder, deleted,"
                " chunks, vectors, dimension, created_at) VALUES (:d, 1, :s, 'old-run', :h, :e, :x, :c, :v, :n, :t)"
            ),
            dict(d=old_id, s=doc.source, h=doc.content_hash, e=services.embedder.name, x=False,
                 c=json.dumps([chunk_to_dict(c) for c in chunks]), v=vectors.tobytes(), n=vectors.shape[1], t=at),
        )
    return [c.id for c in chunks]


@pytest.fixture
def opened() -> Iterator[list[Services]]:
    """Services whose database connections are closed after the test."""
    services: list[Services] = []
    yield services
    for s in services:
        for store in (s.document_store, s.source_store, s.answer_store):
            store.engine.dispose()  # type: ignore[attr-defined]


def test_an_index_with_old_ids_migrates_and_a_reingest_neither_loses_nor_duplicates(
    tmp_path: Path, db_url: str, opened: list[Services]
) -> None:
    kb = tmp_path / "kb"
    team_a, team_b = _teams(kb)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "c7", "title": "Fax", "text": "Fax machines need a dial tone."}) + "\n")
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, _env_file=None)  # type: ignore[call-arg]
    old = Services(settings)
    engine = _old_database(db_url)
    loaded = {d.url: d for d in iter_documents([kb, corpus], source="local", max_bytes=1 << 20)}  # type: ignore[union-attr]
    a_url, b_url = (team_a / "index.md").as_uri(), (team_b / "index.md").as_uri()
    earlier, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    # `supportbot ingest kb` (ids relative to kb), and before it `supportbot ingest kb/teamA`,
    # which gave Team A's page a second id: the old scheme's duplicate of the same file.
    cited = _write_old(old, engine, loaded[a_url], "local:teamA/index.md", later)
    _write_old(old, engine, loaded[a_url], "local:index.md", earlier)
    _write_old(old, engine, loaded[b_url], "local:teamB/index.md", later)
    _write_old(old, engine, loaded[corpus.as_uri() + "#c7"], "c7", later)  # JSONL rows kept their bare _id
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO ingest_runs (id, source, started_at, rolled_back) VALUES ('old-run', 'local', :t, :f)"),
                     dict(t=later, f=False))
        # A removal whose document's location is unknown: it keeps its old id.
        conn.execute(
            sa.text(
                "INSERT INTO doc_versions (doc_id, version, source, run_id, content_hash, embedder, deleted,"
                " chunks, vectors, dimension, created_at) VALUES ('local:gone.md', 2, 'local', 'old-run', '', 'e', :x, '[]', :v, 0, :t)"
            ),
            dict(x=True, v=b"", t=later),
        )
        conn.execute(sa.text("INSERT INTO sources (id, name, kind, options, access, status, last_error, last_summary, created_at)"
                             " VALUES ('s1', 'local', 'folder', '{}', 'public', 'idle', '', '', :t)"), dict(t=later))
        conn.execute(sa.text("INSERT INTO source_documents (source_id, external_id, doc_ids, marker, embedder, run_id, updated_at)"
                             " VALUES ('s1', 'teamA/index.md', :d, 'm', 'e', 'old-run', :t)"),
                     dict(d=json.dumps(["local:teamA/index.md"]), t=later))
        answer = Answer(
            id="a1", question=Question(text="who handles invoices", asker="u"), text="Team A [1].",
            decision=Decision.ANSWERED, confidence=0.8,
            citations=(Citation(1, cited[0], "local:teamA/index.md", "Team A", (), a_url, None),),
        )
        conn.execute(sa.text("INSERT INTO answers (id, created_at, question, asker, platform, conversation, thread,"
                             " decision, confidence, text, payload) VALUES ('a1', :t, 'q', 'u', 'cli', '', '', 'answered', 0.8, 't', :p)"),
                     dict(t=later, p=json.dumps(answer_to_dict(answer))))
        conn.execute(sa.text("INSERT INTO feedback (answer_id, \"user\", platform, vote, comment, created_at)"
                             " VALUES ('a1', 'u', 'cli', 'up', '', :t)"), dict(t=later))
    engine.dispose()
    assert old.index.count() == 4  # Team A twice, Team B, the corpus row

    # The new code opens it: the store migrates, the index follows at the first ingest.
    new = Services(settings)
    opened.append(new)
    new_a, new_b = document_id("local", a_url), document_id("local", b_url)
    new_c7 = document_id("local", corpus.as_uri() + "#c7")
    states = new.document_store.states("local")
    assert set(states) == {new_a, new_b, new_c7, "local:gone.md"}
    assert states[new_a].url == a_url and states["local:gone.md"].deleted
    report = new.ingestor.ingest(iter_documents([kb, corpus], source="local", max_bytes=1 << 20), source="local")
    assert report.added == () and report.changed == () and report.chunks_embedded == 0
    assert sorted(report.unchanged) == sorted([new_a, new_b, new_c7])
    assert new.index.count() == 3  # both pages and the row, each once; the duplicate id is gone
    found = {h.chunk.doc_id for h in new.index.keyword_search("Team handles", 10, UNRESTRICTED)}
    assert found == {new_a, new_b}
    assert corpus_id(new.index.keyword_search("fax dial tone", 1, UNRESTRICTED)[0].chunk.doc_id) == "c7"
    assert new.source_store.documents("s1")["teamA/index.md"].doc_ids == (new_a,)
    [vote] = new.answer_store.vote_records()
    assert vote.chunk_ids == (f"{new_a}#0",)
    # A second ingest and a rollback work on the new ids.
    assert len(new.ingestor.ingest(iter_documents([kb], source="local", max_bytes=1 << 20), source="local").unchanged) == 2
    (team_b / "index.md").write_text("# Team B\n\nTeam B now also handles printers.\n")
    assert new.ingestor.ingest(iter_documents([team_b], source="local", max_bytes=1 << 20), source="local").changed == (new_b,)
    assert new.ingestor.rollback() == [new_b]
    assert any("broken screens" in t for t in _texts(new, "laptops screens"))
    assert new.index.count() == 3


def test_pinecone_ids_written_by_the_old_scheme_are_renamed_from_the_stored_vectors(tmp_path: Path) -> None:
    from adapters.providers.pinecone_index import PineconeIndex, pinecone_client
    from tests.fakes.pinecone_server import FakePinecone

    team_a, team_b = _teams(tmp_path / "kb")
    services = Services(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    engine = _old_database(services.settings.sqlalchemy_url)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with FakePinecone("k", dimension=services.embedder.dimension) as server, pinecone_client(
        "k", server.url, timeout=5
    ) as client:
        index = PineconeIndex(client, namespace="kb")
        for team in (team_a, team_b):
            [doc] = iter_documents([team / "index.md"], source="local", max_bytes=1 << 20)
            assert isinstance(doc, Document)
            _write_old(services, engine, doc, f"local:{team.name}/index.md", at, index)
        engine.dispose()
        before = len(server.records("kb"))
        s = services.settings
        ingestor = Ingestor(services.embedder, index, services.document_store,
                            chunk_size=s.chunk_size, chunk_overlap=s.chunk_overlap)
        report = ingestor.ingest(iter_documents([team_a, team_b], source="local", max_bytes=1 << 20), source="local")
        assert len(report.unchanged) == 2 and report.chunks_embedded == 0
        records = server.records("kb")
        assert len(records) == before  # renamed, not duplicated
        assert {r["metadata"]["doc_id"] for r in records.values()} == {
            document_id("local", (team / "index.md").as_uri()) for team in (team_a, team_b)
        }
