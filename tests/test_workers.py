"""The Celery tasks on real worker processes against a real Redis (system or embedded).

Each test starts its own ``supportbot worker`` subprocesses on a queue of its own, and talks
to them only the way the web process and chat adapters do: through CeleryIngestQueue (tasks
sent by name, progress read from Redis).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from adapters.celery_queue import CeleryIngestQueue
from adapters.factory import Services
from adapters.settings import Settings
from bot.ports import IngestQueue, JobStatus
from bot.types import UNRESTRICTED
from tests.contracts import IngestQueueContract
from tests.fakes.connectors_server import ConfluenceFake, Page, WebsiteFake, ZendeskFake

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[1]


class Workers:
    """Starts and stops worker subprocesses for one test (each in its own process group)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, []  # type: ignore[var-annotated]

    def start(self, *extra: str, ready_timeout: float = 60) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker{len(self.procs)}.log"
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", "worker", "--concurrency=1", *extra],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        deadline = time.monotonic() + ready_timeout
        while b" ready." not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "worker did not start:\n" + log.read_text()
            time.sleep(0.1)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def env(redis_url: str, data_dir: Path) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_") and "PROXY" not in k.upper()
    }
    return {
        **base,
        "SUPPORTBOT_REDIS_URL": redis_url,
        "SUPPORTBOT_DATA_DIR": str(data_dir),
        "SUPPORTBOT_DATABASE_URL": f"sqlite:///{data_dir}/sb.db",
        "SUPPORTBOT_WORKER_QUEUE": f"test-{uuid.uuid4().hex[:8]}",  # no task leaks between tests
        "SUPPORTBOT_FETCH_ALLOW_HOSTS": "127.0.0.1",
        "SUPPORTBOT_FETCH_TIMEOUT_S": "5",
        "SUPPORTBOT_VISIBILITY_TIMEOUT_S": "4",  # a killed worker's task is handed out again quickly
        "SUPPORTBOT_SYNC_LOCK_TTL_S": "3",
        "SUPPORTBOT_TASK_MAX_RETRIES": "2",
        "SUPPORTBOT_RETRY_BACKOFF_MAX_S": "1",
        "SUPPORTBOT_SYNC_CHECK_INTERVAL_S": "1",
        "SUPPORTBOT_SYNC_BATCH_CHUNKS": "4",  # flush to the index (a checkpoint) every few documents
        "SUPPORTBOT_CONFLUENCE_EMAIL": ConfluenceFake.email,
        "SUPPORTBOT_CONFLUENCE_API_TOKEN": ConfluenceFake.token,
        "SUPPORTBOT_ZENDESK_EMAIL": ZendeskFake.email,
        "SUPPORTBOT_ZENDESK_API_TOKEN": ZendeskFake.token,
    }


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(env, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def services(env: dict[str, str], data_dir: Path) -> Services:
    return Services(
        Settings(
            data_dir=data_dir,
            database_url=SecretStr(env["SUPPORTBOT_DATABASE_URL"]),
            redis_url=SecretStr(env["SUPPORTBOT_REDIS_URL"]),
            worker_queue=env["SUPPORTBOT_WORKER_QUEUE"],
        )
    )


@pytest.fixture
def queue(services: Services) -> CeleryIngestQueue:
    q = services.ingest_queue
    assert isinstance(q, IngestQueue) and isinstance(q, CeleryIngestQueue)
    return q


def wait_for(queue: CeleryIngestQueue, job_id: str, timeout: float = 60) -> JobStatus:
    status = queue.wait(job_id, timeout)
    assert status.finished, f"job still {status}"
    return status


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def chunk_ids(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "index.sqlite") as conn:
        return [r[0] for r in conn.execute("select id from chunks")]


def test_ingest_urls_and_files_through_the_queue(
    workers: Workers, queue: CeleryIngestQueue, services: Services, data_dir: Path
) -> None:
    with WebsiteFake() as site:
        site.html(
            "/kb/vpn.html", "VPN setup", "Install the client, then sign in with your badge number and a code."
        )
        workers.start()
        job = queue.enqueue_ingest(site.url + "/kb/vpn.html", "U123", {"channel": "C9", "thread": "171.2"})
        assert queue.status(job).state in ("queued", "running", "done")
        done = wait_for(queue, job)
        assert done.state == "done" and "added 1" in done.summary, done
        assert queue.jobs.notify_context(job) == {"channel": "C9", "thread": "171.2"}

        (data_dir / "uploads").mkdir()
        (data_dir / "uploads" / "leave.md").write_text("# Leave\n\nParental leave is sixteen weeks.\n")
        job = queue.enqueue_ingest(str(data_dir / "uploads" / "leave.md"), "U123", {})
        assert wait_for(queue, job).state == "done"
        found = {
            p.chunk.title for p in services.retriever.search("parental leave weeks", 5, UNRESTRICTED).passages
        }
        assert {"Leave", "VPN setup"} <= found | {
            p.chunk.title for p in services.retriever.search("VPN badge", 5, UNRESTRICTED).passages
        }

        refused = wait_for(queue, queue.enqueue_ingest("http://169.254.169.254/latest/meta-data/", "U1", {}))
        assert refused.state == "failed" and "metadata" in refused.error
        outside = wait_for(queue, queue.enqueue_ingest("/etc/hostname", "U1", {}))
        assert outside.state == "failed" and "only files under" in outside.error
        assert queue.status("no-such-job").state == "unknown"


def test_transient_errors_are_retried_then_fail_with_the_reason(
    workers: Workers, queue: CeleryIngestQueue, services: Services
) -> None:
    with ZendeskFake() as fake:
        fake.pages["1"] = Page("Reset", "<p>Reset the router by holding the button for ten seconds.</p>")
        source = services.source_store.add("help", "zendesk", {"url": fake.url})
        workers.start()
        fake.fail_next(2, status=503)  # two failures, then it recovers: retried with backoff
        ok = wait_for(queue, queue.enqueue_sync("help"))
        assert ok.state == "done" and "1 added" in ok.summary, ok

        fake.fail_next(50, status=503)  # down for good: 1 try + 2 retries, then failed
        failed = wait_for(queue, queue.enqueue_sync(source.id))
        assert failed.state == "failed" and "503" in failed.error
        state = services.source_store.get("help")
        assert state is not None and state.status == "failed" and "503" in state.last_error
        assert len(fake.requests_to("articles.json")) >= 3 + 3


def test_a_page_deleted_at_the_source_is_gone_after_the_next_sync(
    workers: Workers, queue: CeleryIngestQueue, services: Services
) -> None:
    with ConfluenceFake() as fake:
        for i in range(4):
            fake.pages[str(i)] = Page(f"Guide {i}", f"<p>Guide {i} explains the export wizard, step {i}.</p>")
        services.source_store.add("wiki", "confluence", {"url": fake.url, "space": "DOCS"})
        workers.start()
        first = wait_for(queue, queue.enqueue_sync("wiki"))
        assert first.state == "done" and (first.done, first.total) == (4, 4), first
        del fake.pages["2"]
        second = wait_for(queue, queue.enqueue_sync("wiki"))
        assert "1 removed" in second.summary and "3 unchanged" in second.summary, second
        hits = services.retriever.search("guide 2 export wizard step 2", 10, UNRESTRICTED).passages
        assert "Guide 2" not in {h.chunk.title for h in hits}


def test_two_syncs_of_one_source_run_one_after_the_other(
    workers: Workers, queue: CeleryIngestQueue, services: Services
) -> None:
    with ConfluenceFake() as fake:
        for i in range(4):
            fake.pages[str(i)] = Page(f"Page {i}", f"<p>Content of page {i} about quotas.</p>")
        fake.delay_s = 0.15
        services.source_store.add("wiki", "confluence", {"url": fake.url, "space": "DOCS"})
        workers.start()
        workers.start()
        jobs = [queue.enqueue_sync("wiki"), queue.enqueue_sync("wiki")]
        summaries = sorted(wait_for(queue, j).summary for j in jobs)
        # One sync added the four pages; the other ran after it and found nothing to do.
        assert any("4 added" in s for s in summaries) and any("4 unchanged" in s for s in summaries), (
            summaries
        )
        starts = [h.at for h in fake.hits if h.path == "/wiki/api/v2/spaces"]
        loads = [h.at for h in fake.hits if h.path.startswith("/wiki/api/v2/pages/")]
        assert len(starts) == 2 and len(loads) == 4
        assert starts[1] > max(loads)  # the second listing began after the first sync's last load


def test_a_worker_killed_mid_sync_is_resumed_with_no_lost_or_duplicated_chunks(
    workers: Workers, queue: CeleryIngestQueue, services: Services, data_dir: Path
) -> None:
    with ConfluenceFake() as fake:
        n = 40
        for i in range(n):
            fake.pages[f"{i:03}"] = Page(f"Article {i}", f"<p>Article {i} describes setting number {i}.</p>")
        fake.page_size = 50
        fake.delay_s = 0.1  # ~4 s of loading: time to kill the worker in the middle
        services.source_store.add("wiki", "confluence", {"url": fake.url, "space": "DOCS"})
        first = workers.start()
        job = queue.enqueue_sync("wiki")
        until(lambda: queue.status(job).done >= 10, 30, "the sync to get going")
        workers.kill(first)  # SIGKILL the whole worker: no chance to clean up or requeue
        assert not queue.status(job).finished

        workers.start()  # the task is redelivered (acks_late) once the visibility timeout passes
        done = wait_for(queue, job, timeout=90)
        assert done.state == "done" and "(resumed)" in done.summary, done
        assert "40 added" not in done.summary  # what was done before the kill was not redone
        ids = chunk_ids(data_dir)
        assert len(ids) == len(set(ids)) == n  # nothing lost, nothing duplicated
        state = services.source_store.get("wiki")
        assert state is not None and state.documents == n and state.status == "done"


def test_beat_syncs_sources_when_they_are_due(workers: Workers, services: Services, tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# Holidays\n\nThe office closes on public holidays.\n")
    services.source_store.add("kb", "folder", {"path": str(folder)}, interval_s=3600)
    services.source_store.add("manual", "folder", {"path": str(folder)})  # no interval: never scheduled
    workers.start("--beat")

    def synced() -> bool:
        kb = services.source_store.get("kb")
        return kb is not None and kb.status == "done"

    until(synced, 60, "beat to sync the due source")
    kb, manual = services.source_store.get("kb"), services.source_store.get("manual")
    assert kb is not None and manual is not None
    assert kb.next_due_at is not None and kb.last_sync_at is not None and kb.next_due_at > kb.last_sync_at
    assert manual.status == "idle" and manual.last_sync_at is None


def test_ingest_job_counts_files_up_front_reports_rate_and_logs_quietly(
    workers: Workers, queue: CeleryIngestQueue, data_dir: Path, tmp_path: Path
) -> None:
    folder = data_dir / "uploads" / "batch"
    folder.mkdir(parents=True)
    for i in range(4):
        (folder / f"n{i}.md").write_text(f"# Note {i}\n\nThe printer on floor {i} needs toner model T{i}.\n")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x00")
    workers.start()
    status = wait_for(queue, queue.enqueue_ingest(str(folder), requested_by="test", notify={}), timeout=120)
    assert status.state == "done", status
    assert "added 4" in status.summary and "skipped 1, failed 0" in status.summary
    assert status.total == 5 and status.done == 5  # the files, counted before the first was read
    assert status.rate is not None and status.rate > 0 and status.eta_s == 0
    log = (tmp_path / "worker0.log").read_text()
    # At the default level a task's life is not logged line by line, nor are migrations.
    assert "succeeded in" not in log and "] received" not in log and "Context impl" not in log


class TestCeleryIngestQueue(IngestQueueContract):
    """The IngestQueue contract on a real worker process (tasks sent by name, progress in Redis)."""

    @pytest.fixture
    def ingest_queue(self, workers: Workers, queue: CeleryIngestQueue) -> IngestQueue:
        workers.start()
        return queue

    @pytest.fixture
    def ingest_target(self, data_dir: Path) -> str:
        (data_dir / "uploads").mkdir(exist_ok=True)
        path = data_dir / "uploads" / "leave.md"
        path.write_text("# Leave\n\nParental leave is sixteen weeks.\n")
        return str(path)

    @pytest.fixture
    def sync_source(self, services: Services, tmp_path: Path) -> str:
        folder = tmp_path / "kb"
        folder.mkdir()
        (folder / "vpn.md").write_text("# VPN\n\nInstall the client, then sign in with your badge.\n")
        return services.source_store.add("kb", "folder", {"path": str(folder)}).name

    @pytest.fixture
    def bad_target(self) -> str:
        return "/etc/hostname"  # outside the data directory: refused
