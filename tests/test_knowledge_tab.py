"""The admin page's Knowledge tab over real HTTP and in headless Chromium, with a real worker.

Documents are ingested with the CLI (a real `supportbot ingest` process), the web app is served
by uvicorn on 127.0.0.1, and uploads are read by a real `supportbot worker` process through
Redis: the same path as production.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from adapters.factory import Services
from adapters.settings import Settings
from adapters.web.app import create_app
from tests.test_web_browser import CHROMIUM_ARGS, Server, chromium  # noqa: F401  (a fixture)
from tests.test_workers import Workers

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "knowledge-admin-password"
DOCS = {
    "vpn.md": "# VPN access\n\n## Connecting\n\nTo connect to the VPN, open the client and sign in with your badge.\n",
    "printers.md": "# Printers\n\nThe printer on floor 3 takes toner T-300. Report jams to the help desk.\n",
    "README.Debian": "The Debian package installs the client under /usr/bin and its config in /etc/vpn.\n",
}


@pytest.fixture(scope="module")
def env(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("knowledge") / "data"
    data.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_") and "PROXY" not in k.upper()}
    return {
        **base,
        "SUPPORTBOT_REDIS_URL": redis_url,
        "SUPPORTBOT_DATA_DIR": str(data),
        "SUPPORTBOT_DATABASE_URL": f"sqlite:///{data}/sb.db",
        "SUPPORTBOT_WORKER_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
    }


@pytest.fixture(scope="module")
def services(env: dict[str, str]) -> Services:
    folder = Path(env["SUPPORTBOT_DATA_DIR"]).parent / "kb"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    # Ingested with the CLI, as a person would: the tab must show these too.
    subprocess.run(
        [sys.executable, "-m", "adapters.cli", "ingest", str(folder), "--access", "public,staff"],
        env=env, cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return Services(
        Settings(
            data_dir=Path(env["SUPPORTBOT_DATA_DIR"]),
            database_url=SecretStr(env["SUPPORTBOT_DATABASE_URL"]),
            redis_url=SecretStr(env["SUPPORTBOT_REDIS_URL"]),
            worker_queue=env["SUPPORTBOT_WORKER_QUEUE"],
            admin_password=SecretStr(PASSWORD),
            max_file_mb=1,
            _env_file=None,
        )  # type: ignore[call-arg]
    )


@pytest.fixture(scope="module")
def server(services: Services) -> Iterator[Server]:
    with Server(create_app(services)) as running:
        yield running


@pytest.fixture(scope="module")
def worker(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    pool = Workers(env, tmp_path_factory.mktemp("worker-logs"))
    pool.start()
    yield pool
    pool.stop_all()


@contextmanager
def admin_client(server: Server) -> Iterator[tuple[httpx.Client, str]]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        reply = client.post("/login", data={"password": PASSWORD, "next": "/admin"})
        assert reply.status_code in (200, 303), reply.text
        page = client.get("/admin")
        match = re.search(r'"csrf":\s*"([^"]+)"', page.text)
        assert match, page.text[:500]
        yield client, match.group(1)


def documents(client: httpx.Client, **params: str) -> dict[str, Any]:
    reply = client.get("/api/admin/documents", params=params)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def wait_for_document(client: httpx.Client, title: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in documents(client, q=title)["documents"] if d["title"] == title]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"{title!r} never appeared; uploads: {client.get('/api/admin/uploads').text}")


def test_documents_list_search_open_and_remove_over_http(server: Server, services: Services) -> None:
    with admin_client(server) as (client, csrf):
        assert httpx.get(server.url + "/api/admin/documents").status_code == 401  # admin only
        listed = documents(client)
        titles = {d["title"]: d for d in listed["documents"]}
        assert {"VPN access", "Printers", "README"} <= set(titles)  # CLI ingests included
        vpn = titles["VPN access"]
        assert vpn["source"] == "local" and vpn["access"] == ["public", "staff"] and vpn["chunks"] >= 1
        assert vpn["updated_at"] and vpn["last_ingest"] and listed["sources"] == ["local"]

        assert [d["title"] for d in documents(client, q="printers")["documents"]] == ["Printers"]
        assert documents(client, q="no such thing")["total"] == 0

        opened = client.get("/api/admin/documents/chunks", params={"doc_id": vpn["doc_id"]}).json()
        [chunk] = opened["chunks"]
        assert "open the client and sign in" in chunk["text"]
        assert chunk["heading_path"] == ["VPN access", "Connecting"] or "Connecting" in chunk["heading_path"]
        assert chunk["embedded"].startswith("VPN access") and chunk["embedded"].endswith(chunk["text"])

        printers = titles["Printers"]
        assert services.retriever.search("toner for the floor 3 printer", 3, _unrestricted()).passages
        no_csrf = client.delete("/api/admin/documents", params={"doc_id": printers["doc_id"]})
        assert no_csrf.status_code == 403
        removed = client.delete(
            "/api/admin/documents", params={"doc_id": printers["doc_id"]}, headers={"X-CSRF-Token": csrf}
        )
        assert removed.status_code == 200, removed.text
        assert "Printers" not in {d["title"] for d in documents(client)["documents"]}
        passages = services.retriever.search("toner for the floor 3 printer", 5, _unrestricted()).passages
        assert all(p.chunk.doc_id != printers["doc_id"] for p in passages)  # the bot cannot cite it now
        gone = client.get("/api/admin/documents/chunks", params={"doc_id": printers["doc_id"]})
        assert gone.status_code == 404
        services.ingestor.rollback()  # removing is one ingest run: it can be undone
        assert "Printers" in {d["title"] for d in documents(client)["documents"]}


def _unrestricted() -> Any:
    from bot.types import UNRESTRICTED

    return UNRESTRICTED


def test_uploads_are_checked_then_read_by_a_worker(server: Server, worker: Workers) -> None:
    with admin_client(server) as (client, csrf):
        headers = {"X-CSRF-Token": csrf, "Content-Type": "application/octet-stream"}
        too_big = client.put("/api/admin/uploads/big.txt", content=b"word " * 300_000, headers=headers)
        assert too_big.status_code == 413 and "SUPPORTBOT_MAX_FILE_MB" in too_big.json()["detail"]
        image = client.put("/api/admin/uploads/logo.png", content=b"\x89PNG\r\n\x00\x00", headers=headers)
        assert image.status_code == 415 and "unsupported file type" in image.json()["detail"]
        hidden = client.put("/api/admin/uploads/.env", content=b"SECRET=1", headers=headers)
        assert hidden.status_code == 400
        assert client.put("/api/admin/uploads/x.md", content=b"# X\n\nx\n").status_code == 403  # no CSRF token

        body = b"# Parking\n\nVisitors park on level -2; ask reception for a ticket.\n"
        queued = client.put("/api/admin/uploads/..%2F..%2Fparking.md", content=body, headers=headers)
        assert queued.status_code == 202, queued.text
        assert queued.json()["name"] == "parking.md"  # folders in the name are dropped
        parking = wait_for_document(client, "Parking")
        assert parking["source"] == "uploads" and parking["chunks"] == 1
        jobs = client.get("/api/admin/uploads").json()["uploads"]
        assert jobs[0]["name"] == "parking.md" and jobs[0]["job"]["state"] == "done"


def test_knowledge_tab_in_chromium(chromium: Path, server: Server, worker: Workers, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a shared, loaded machine: the page waits on a worker and SQLite
    try:
        _drive_the_knowledge_tab(chromium, server, expect, sync_playwright)
    finally:
        expect.set_options(timeout=5_000)  # Playwright's default, for the other tests


def _drive_the_knowledge_tab(chromium: Path, server: Server, expect: Any, sync_playwright: Any) -> None:  # noqa: F811
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "status of 4" not in m.text else None)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        page.goto(server.url + "/login?next=/admin")
        page.fill("#password", PASSWORD)
        page.click("#sign-in")
        # No source is kept in sync, but the bot knows documents: the overview points to them.
        expect(page.locator("#sources-empty")).to_contain_text("Knowledge")
        page.click("#to-knowledge")
        expect(page.locator("#tab-knowledge")).to_have_attribute("aria-selected", "true")
        expect(page.locator("#knowledge")).to_be_visible()
        expect(page.locator("#overview")).to_be_hidden()
        rows = page.locator("#documents tbody tr")
        expect(page.locator("#documents")).to_contain_text("VPN access")
        expect(page.locator("#documents-totals")).to_contain_text("passages the bot can cite")

        # Search narrows the list; open a document to read its passages as the bot sees them.
        page.fill("#doc-search", "vpn")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("VPN access")
        rows.first.locator("button.open-doc").click()
        expect(page.locator("#document-detail")).to_be_visible()
        expect(page.locator("#detail-title")).to_have_text("VPN access")
        expect(page.locator("#detail-chunks .chunk .text").first).to_contain_text("open the client and sign in")
        expect(page.locator("#detail-chunks .chunk .context").first).to_contain_text("Connecting")
        page.click("#detail-close")

        # Remove a document (confirmed in the dialog).
        page.fill("#doc-search", "README")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("README")  # the list of the new search, not the last one
        rows.first.locator("button.remove").click()
        expect(page.locator("#documents tbody")).to_contain_text("No document matches")
        assert dialogs == ['Remove "README" from what the bot knows? (supportbot rollback brings it back)']

        # Drop a file on the drop zone: a worker reads it and it appears in the list.
        page.fill("#doc-search", "")
        page.evaluate(
            """() => {
              const data = new DataTransfer();
              data.items.add(new File(["# Canteen\\n\\nThe canteen opens at 11:30 on weekdays.\\n"], "canteen.md", {type: "text/markdown"}));
              document.getElementById("dropzone").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
            }"""
        )
        expect(page.locator("#uploads")).to_contain_text("canteen.md")
        expect(page.locator('#uploads li.upload[data-name="canteen.md"]')).to_have_class(re.compile("st-done"), timeout=120_000)
        expect(page.locator("#documents")).to_contain_text("Canteen", timeout=30_000)

        # A file of an unsupported type is refused with its reason, nothing queued.
        page.set_input_files("#upload-input", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x00"}])
        expect(page.locator("#uploads li.st-failed")).to_contain_text("unsupported file type")
        browser.close()
    assert not problems, problems
