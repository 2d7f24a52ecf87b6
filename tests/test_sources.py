"""The sync engine (knowledge/sources.py) and every connector, in process, against fakes on 127.0.0.1.

Incremental: unchanged items are not even loaded and nothing is embedded; changed ones are
re-embedded; items deleted at the source are gone from search after the next sync; a sync that
crashed half-way resumes under the same run id without duplicating chunks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from adapters.factory import Services
from adapters.settings import Settings
from bot.errors import ConfigError, SourceError
from bot.ports import Connector, RemoteItem
from bot.types import UNRESTRICTED, Document
from knowledge.sources import Source
from tests.fakes.connectors_server import (
    ConfluenceFake,
    GitHubFake,
    NotionFake,
    Page,
    WebsiteFake,
    ZendeskFake,
)


@pytest.fixture
def services(data_dir: Path) -> Iterator[Services]:
    settings = Settings(
        data_dir=data_dir,
        database_url=SecretStr(f"sqlite:///{data_dir}/sb.db"),
        fetch_allow_hosts=["127.0.0.1"],
        fetch_timeout_s=5,
        confluence_email=ConfluenceFake.email,
        confluence_api_token=SecretStr(ConfluenceFake.token),
        zendesk_email=ZendeskFake.email,
        zendesk_api_token=SecretStr(ZendeskFake.token),
        github_token=SecretStr(GitHubFake.token),
        notion_token=SecretStr(NotionFake.token),
    )
    svc = Services(settings)
    yield svc
    svc.fetcher.close()


def sync(services: Services, source: Source, connector: Connector | None = None):  # type: ignore[no-untyped-def]
    fresh = services.source_store.get(source.id)
    assert fresh is not None
    return services.syncer.sync(fresh, connector or services.connector(fresh), run_id=uuid.uuid4().hex)


def titles(services: Services, query: str, source: str) -> set[str]:
    hits = services.retriever.search(query, 20, UNRESTRICTED).passages
    return {h.chunk.title for h in hits if h.chunk.source == source}


def chunk_ids(services: Services) -> list[str]:
    import sqlite3

    with sqlite3.connect(services.data_dir / "index.sqlite") as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        table = next(t for t in tables if t in ("chunks", "chunk"))
        return [r[0] for r in conn.execute(f"select id from {table}")]


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


# --- folder: incremental, deletions, resume ----------------------------------------------------------


def test_folder_sync_is_incremental_and_removes_deleted_files(services: Services, tmp_path: Path) -> None:
    docs = tmp_path / "kb"
    for i in range(5):
        write(docs, f"doc{i}.md", f"# Topic {i}\n\nThe refund window for plan {i} is {i + 10} days.\n")
    write(docs, "image.png", "not a document")  # unsupported files are ignored, not failures
    source = services.source_store.add("kb", "folder", {"path": str(docs)})

    first = sync(services, source)
    assert (first.listed, first.added, first.chunks_embedded) == (5, 5, 5)
    assert not first.failed

    again = sync(services, source)
    assert (again.skipped, again.added, again.changed, again.chunks_embedded) == (5, 0, 0, 0)

    write(docs, "doc1.md", "# Topic 1\n\nThe refund window for plan 1 is now 99 days.\n")
    (docs / "doc3.md").unlink()
    third = sync(services, source)
    assert (third.changed, third.removed, third.skipped, third.chunks_embedded) == (1, 1, 3, 1)
    assert "Topic 3" not in titles(services, "refund window plan 3", "kb")
    assert services.index.count() == 4
    state = services.source_store.get("kb")
    assert state is not None and state.status == "done" and state.documents == 4
    assert "1 changed" in state.last_summary


class CrashAfter:
    """Wraps a connector and 'crashes' (raises) after loading ``n`` items, like a killed worker."""

    kind = "folder"

    def __init__(self, inner: Connector, n: int) -> None:
        self.inner, self.n, self.loaded = inner, n, 0

    def items(self) -> Iterator[RemoteItem]:
        return self.inner.items()

    def load(self, item: RemoteItem) -> list[Document]:
        if self.loaded >= self.n:
            raise KeyboardInterrupt("simulated crash")
        self.loaded += 1
        return self.inner.load(item)


def test_a_crashed_sync_resumes_from_its_checkpoint_without_duplicates(
    services: Services, tmp_path: Path
) -> None:
    docs = tmp_path / "kb"
    for i in range(30):
        write(docs, f"doc{i:02}.md", f"# Note {i}\n\nShipping note number {i} says parcels take {i} days.\n")
    source = services.source_store.add("kb", "folder", {"path": str(docs)})
    services.syncer.checkpoint_every = 5  # checkpoint often, as a long sync does
    services.sync_ingestor.batch_chunks = 4  # and flush to the index often

    crashing = CrashAfter(services.connector(source), 17)
    with pytest.raises(KeyboardInterrupt):
        sync(services, source, crashing)
    crashed = services.source_store.get("kb")
    assert crashed is not None and crashed.status == "running"
    checkpointed = services.source_store.documents(source.id)
    assert 0 < len(checkpointed) <= 17
    run_id = next(iter(checkpointed.values())).run_id

    resumed = sync(services, source)
    assert resumed.resumed and resumed.run_id == run_id  # one run: rollback undoes all of it
    assert resumed.skipped == len(checkpointed)
    assert resumed.chunks_embedded == 30 - 16  # what was flushed before the crash is not embedded again
    ids = chunk_ids(services)
    assert len(ids) == len(set(ids)) == 30  # nothing lost, nothing duplicated


def test_missing_folder_fails_without_deleting_anything(services: Services, tmp_path: Path) -> None:
    docs = tmp_path / "kb"
    write(docs, "a.md", "# A\n\nAlpha.\n")
    source = services.source_store.add("kb", "folder", {"path": str(docs)})
    sync(services, source)
    (docs / "a.md").unlink()
    docs.rmdir()
    with pytest.raises(SourceError, match="does not exist"):
        sync(services, source)
    assert services.index.count() == 1


def test_bad_options_and_missing_credentials_are_config_errors(services: Services) -> None:
    with pytest.raises(ConfigError, match="option space"):
        services.connector(services.source_store.add("c", "confluence", {"url": "https://x.atlassian.net"}))
    with pytest.raises(ConfigError, match="unknown source kind"):
        services.connector(services.source_store.add("d", "dropbox", {}))
    with pytest.raises(ConfigError, match="already exists"):
        services.source_store.add("c", "folder", {"path": "/tmp"})
    bare = Services(
        Settings(data_dir=services.data_dir, database_url=SecretStr(f"sqlite:///{services.data_dir}/sb.db"))
    )
    zd = bare.connector(services.source_store.add("z", "zendesk", {"url": "https://x.zendesk.com"}))
    with pytest.raises(ConfigError, match="SUPPORTBOT_ZENDESK_EMAIL"):
        next(iter(zd.items()))


# --- SaaS connectors ----------------------------------------------------------------------------


def test_confluence_pages_paginated_incremental_and_deleted(services: Services) -> None:
    with ConfluenceFake() as fake:
        for i in range(5):
            fake.pages[str(100 + i)] = Page(
                f"Runbook {i}", f"<h2>Steps</h2><p>Restart service {i} with the red button.</p>"
            )
        source = services.source_store.add("wiki", "confluence", {"url": fake.url, "space": "DOCS"})
        fake.rate_limit_next(1, retry_after=0)  # the first call is rate limited and retried
        first = sync(services, source)
        assert (first.listed, first.added) == (5, 5)
        assert len(fake.requests_to(f"/spaces/{fake.space_id}/pages")) == 3  # 2 + 2 + 1 per page
        hit = services.retriever.search("restart service 2 red button", 3, UNRESTRICTED).passages[0].chunk
        assert hit.title == "Runbook 2" and hit.heading_path[-1] == "Steps"
        assert hit.url == f"{fake.url}/wiki/spaces/DOCS/pages/102"

        fake.hits.clear()
        fake.pages["101"].touch("<p>Restart service 1 with the blue button now.</p>")
        del fake.pages["104"]
        second = sync(services, source)
        assert (second.changed, second.removed, second.skipped) == (1, 1, 3)
        assert [h.path for h in fake.requests_to("/wiki/api/v2/pages/")] == ["/wiki/api/v2/pages/101"]
        assert "Runbook 4" not in titles(services, "restart service 4", "wiki")


def test_zendesk_articles_paginated_skip_drafts_and_sync_changes(services: Services) -> None:
    with ZendeskFake() as fake:
        for i in range(1, 6):
            fake.pages[str(i)] = Page(f"How to {i}", f"<p>Article {i}: reset your password in step {i}.</p>")
        fake.drafts.add("5")
        source = services.source_store.add("help", "zendesk", {"url": fake.url})
        first = sync(services, source)
        assert (first.listed, first.added) == (4, 4)
        assert len(fake.hits) == 3
        fake.pages["2"].touch("<p>Article 2: passwords are reset by the admin.</p>")
        fake.rate_limit_next(2, retry_after=0)
        second = sync(services, source)
        assert (second.changed, second.skipped, second.chunks_embedded) == (1, 3, 1)


def test_github_docs_by_blob_sha(services: Services) -> None:
    with GitHubFake() as fake:
        fake.pages["docs/install.md"] = Page("install", "# Install\n\nRun the installer as admin.\n")
        fake.pages["docs/faq.md"] = Page("faq", "# FAQ\n\nLicenses renew every year.\n")
        fake.pages["src/main.py"] = Page("code", "print('not docs')\n")
        source = services.source_store.add(
            "gh", "github", {"repo": fake.repo, "api_url": fake.url, "web_url": "https://github.com"}
        )
        first = sync(services, source)
        assert (first.listed, first.added) == (2, 2)
        hit = services.retriever.search("licenses renew", 1, UNRESTRICTED).passages[0].chunk
        assert hit.url == "https://github.com/acme/handbook/blob/main/docs/faq.md"
        fake.hits.clear()
        fake.pages["docs/faq.md"].touch("# FAQ\n\nLicenses renew every month.\n")
        second = sync(services, source)
        assert (second.changed, second.skipped) == (1, 1)
        assert [h.path for h in fake.requests_to("/contents/")] == [
            "/repos/acme/handbook/contents/docs/faq.md"
        ]


def test_notion_pages_and_blocks_paginated(services: Services) -> None:
    with NotionFake() as fake:
        for i in range(3):
            fake.pages[f"p{i}"] = Page(
                f"Policy {i}", f"Intro {i}.\n\nExpenses over {i}00 euros need approval.\n\nEnd."
            )
        source = services.source_store.add("notion", "notion", {"api_url": fake.url})
        first = sync(services, source)
        assert (first.listed, first.added) == (3, 3)
        hit = services.retriever.search("expenses over 200 euros approval", 1, UNRESTRICTED).passages[0].chunk
        assert hit.title == "Policy 2" and "200 euros" in hit.text
        del fake.pages["p0"]
        second = sync(services, source)
        assert (second.removed, second.skipped) == (1, 2)


# --- web site -----------------------------------------------------------------------------------


def test_web_crawl_respects_host_prefix_robots_and_page_limit(services: Services) -> None:
    with WebsiteFake() as fake:
        fake.html(
            "/docs/",
            "Docs home",
            "Welcome to the docs of the product, where everything is explained in full.",
            [
                "/docs/a.html",
                "/docs/b.html",
                "/docs/private/secret.html",
                "/blog/post.html",
                "http://example.com/docs/x.html",
            ],
        )
        fake.html(
            "/docs/a.html",
            "Billing",
            "Invoices are sent on the first day of every month by e-mail to the owner.",
            ["/docs/b.html"],
        )
        fake.html(
            "/docs/b.html",
            "Security",
            "Two-factor authentication can be enforced for every member of a team.",
        )
        fake.html(
            "/docs/private/secret.html", "Secret", "Nobody should index this page at all, robots say no."
        )
        fake.html("/blog/post.html", "Blog", "Outside the prefix, so never crawled by the docs source here.")
        source = services.source_store.add("site", "web", {"url": fake.url + "/docs/", "concurrency": "2"})
        first = sync(services, source)
        assert first.listed == 3 and first.added == 3
        crawled = {h.path for h in fake.hits}
        assert "/docs/private/secret.html" not in crawled and "/blog/post.html" not in crawled

        del fake.site.files["/docs/b.html"]  # deleted at the source: gone after the next sync
        second = sync(services, source)
        assert second.removed == 1 and second.unchanged == 2 and second.chunks_embedded == 0
        assert "Security" not in titles(services, "two-factor authentication", "site")

        limited = services.source_store.add("site2", "web", {"url": fake.url + "/docs/", "max_pages": "1"})
        assert sync(services, limited).listed == 1


def test_web_sitemap_lastmod_is_the_marker(services: Services) -> None:
    with WebsiteFake() as fake:
        fake.html(
            "/docs/a.html", "Alpha", "Alpha page text that is long enough to be kept as main content here."
        )
        fake.html(
            "/docs/b.html", "Beta", "Beta page text that is long enough to be kept as main content here too."
        )
        sitemap = (
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{fake.url}/docs/a.html</loc><lastmod>2024-01-01</lastmod></url>"
            f"<url><loc>{fake.url}/docs/b.html</loc><lastmod>2024-01-01</lastmod></url></urlset>"
        )
        fake.site.files["/sitemap.xml"] = ("application/xml", sitemap.encode())
        source = services.source_store.add("map", "web", {"url": fake.url + "/sitemap.xml"})
        assert sync(services, source).added == 2
        fake.hits.clear()
        again = sync(services, source)
        assert again.skipped == 2 and not fake.requests_to("/docs/")
