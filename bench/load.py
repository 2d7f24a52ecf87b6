"""Load: 50 concurrent questions against the HTTP endpoints (Slack events and Teams activities).

    python bench/load.py [--json] [--seconds 60] [--questions 10000] [--concurrency 50]

The server runs in a subprocess (``--serve``, so its memory can be read with psutil): the
offline default (ONNX MiniLM, embedded index, extractive generator, SQLite answer store)
with the Slack router and the Teams router, exactly as the web server mounts them, under
uvicorn on 127.0.0.1. The fake Slack Web API and the fake Bot Connector run here and receive
the answers. Half the questions are signed Slack ``app_mention`` events, each followed by the
``message`` event Slack sends for the same mention (the bot must answer once); half are Teams
personal-chat activities. The run lasts until both ``--seconds`` have passed and
``--questions`` have been answered (the defaults are the issue's: 60 s, 10,000).

Figures: ``errors`` (non-2xx replies, failure texts, answers that never came within 30 s),
``duplicates`` (answers beyond one per question), ``p50_ms``/``p95_ms`` (POST until the answer
reached the fake), ``rss_mb_1k``/``rss_mb_10k`` (server RSS after a tenth of the questions and
after all of them), ``rss_growth_pct``. Rate limits are off in the server: the bench measures
the answering path, not the limiter. Targets: 0 errors, 0 duplicates, memory growth ≤ 10%.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _common import ROOT, emit, log  # noqa: I001

from bot.evaluation import percentile
from tests.fakes.slack_server import BOT_USER, FakeSlack, event_body, mention, message, signed_headers
from tests.fakes.teams_connector import Activities, Call, FakeConnector

SECRET = "load-signing-secret"
TOPICS = [
    ("vpn", "VPN access", "Install the WireGuard client and import the profile from the self-service portal. "
     "The VPN is required for the finance systems and the HR portal."),
    ("password", "Resetting your password", "Open id.example.com, choose Forgot password and follow the emailed "
     "link. The link expires after 30 minutes. After five failed attempts the account is locked for 15 minutes."),
    ("refunds", "Refund policy", "Customers can request a refund within 30 days of purchase. Refunds are paid to "
     "the original payment method within 5 business days."),
    ("laptop", "Laptop replacement", "A broken laptop is replaced within two working days. Open a hardware ticket "
     "in the service portal and bring the laptop to the IT desk."),
    ("expenses", "Expense claims", "Submit expense claims in the finance portal within 60 days with a photo of the "
     "receipt. Claims are reimbursed with the next salary payment."),
    ("holiday", "Holiday requests", "Request holidays in the HR portal at least two weeks ahead. Your manager "
     "approves them; unused days carry over until the end of March."),
]
QUESTIONS = [
    "How do I connect to the VPN?", "How do I reset my password?", "How long do refunds take?",
    "My laptop is broken, what do I do?", "How do I submit an expense claim?", "How do I request a holiday?",
    "What happens after five failed sign-in attempts?", "Do unused holiday days carry over?",
]
FAILURE_MARKERS = ("Sorry, something went wrong",)


# -- the server (subprocess) ----------------------------------------------------------------------
def serve(port: int, data: Path, slack_api: str) -> None:
    import logging

    import uvicorn
    from fastapi import FastAPI

    from adapters.factory import Services
    from adapters.settings import Settings
    from adapters.slack.app import SlackOptions
    from adapters.slack.http import slack_router
    from adapters.slack.state import SlackState
    from adapters.teams.http import teams_router
    from knowledge.loaders import iter_documents

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data / "data", slack_bot_token="xoxb-load", slack_signing_secret=SECRET,  # type: ignore[arg-type]
        slack_api_url=slack_api, rate_questions_per_user=0, rate_questions_per_conversation=0,
    )
    services = Services(settings)
    services.ingestor.ingest(iter_documents([data / "docs"], source="kb", max_bytes=10**7), source="kb")
    bot = services.slack_bot(state=SlackState(None), options=SlackOptions(first_update_after_s=60, workers=32))
    app = FastAPI()
    app.include_router(slack_router(services, bot))
    app.include_router(teams_router(services))

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="off")


# -- the load (this process) ----------------------------------------------------------------------
class Tracker:
    """Answers arriving at the fakes, by question key; waiters are woken per key."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def expect(self, key: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(key, threading.Event())

    def arrived(self, key: str, failure: bool) -> None:
        with self.lock:
            self.count[key] = self.count.get(key, 0) + 1
            if failure:
                self.failures[key] = self.failures.get(key, 0) + 1
            event = self.events.setdefault(key, threading.Event())
        event.set()


class TrackedSlack(FakeSlack):
    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def _reply(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        reply = super()._reply(method, args)
        self.calls.clear()  # keep the fake's own memory flat over 10,000 questions
        if method == "chat.postMessage":
            meta = args.get("metadata") or {}
            text = str(args.get("text") or "")
            if meta.get("event_type") == "supportbot_answer" or text.startswith(FAILURE_MARKERS):
                self.tracker.arrived(f"slack:{args.get('thread_ts')}", text.startswith(FAILURE_MARKERS))
        self.messages.pop(str(args.get("channel", "")), None)
        return reply


class TrackedConnector(FakeConnector):
    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def _record(self, call: Call) -> None:
        if call.type == "message" and call.method == "POST":
            text = str(call.body.get("text") or "")
            if call.card is not None or text.startswith(FAILURE_MARKERS):
                self.tracker.arrived(f"teams:{call.conversation}", text.startswith(FAILURE_MARKERS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--slack-api", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.data, args.slack_api)
        return

    import tempfile

    import psutil

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        os.environ.pop(name, None)
    tracker = Tracker()
    with tempfile.TemporaryDirectory() as tmp, TrackedSlack(tracker) as slack, TrackedConnector(tracker) as teams:
        data = Path(tmp)
        (data / "docs").mkdir()
        for slug, title, text in TOPICS:
            (data / "docs" / f"{slug}.md").write_text(f"# {title}\n\n{text}\n")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(port), "--data", str(data),
             "--slack-api", slack.api_url], env=env, stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            figures = run_load(base, server, slack, teams, tracker, args, psutil)
        finally:
            server.terminate()
            server.wait(20)
    emit("load", figures, args.json)


def run_load(base: str, server: subprocess.Popen[bytes], slack: FakeSlack, teams: FakeConnector, tracker: Tracker,
             args: argparse.Namespace, psutil: Any) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=1, trust_env=False).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the server did not start")
        time.sleep(0.2)
    process = psutil.Process(server.pid)
    acts = Activities(teams.service_url)
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    keys: list[str] = []
    done = [0]
    rss: dict[str, float] = {}
    started = time.monotonic()
    tenth = max(1, args.questions // 10)

    def finished() -> bool:
        return time.monotonic() - started >= args.seconds and done[0] >= args.questions

    def one(client: httpx.Client, n: int) -> None:
        text = QUESTIONS[n % len(QUESTIONS)]
        t0 = time.perf_counter()
        if n % 2 == 0:
            channel = f"C{n % 50}"
            ts = slack.next_ts()
            key = f"slack:{ts}"
            waiter = tracker.expect(key)
            for body in (event_body(mention(channel, ts, text, user=f"U{n}")),
                         event_body(message(channel, ts, f"<@{BOT_USER}> {text}", user=f"U{n}"))):
                reply = client.post(f"{base}/slack/events", content=body, headers=signed_headers(SECRET, body))
                if reply.status_code != 200:
                    with lock:
                        errors.append(f"slack HTTP {reply.status_code}")
        else:
            conv = f"a:load-{n}"
            key = f"teams:{conv}"
            waiter = tracker.expect(key)
            reply = client.post(f"{base}/api/messages", json=acts.personal(text, conversation=conv, aad=f"aad-{n}"))
            if reply.status_code not in (200, 201):
                with lock:
                    errors.append(f"teams HTTP {reply.status_code}")
        if not waiter.wait(30):
            with lock:
                errors.append(f"no answer for {key}")
            return
        with lock:
            latencies.append((time.perf_counter() - t0) * 1000)
            keys.append(key)
            done[0] += 1
            count = done[0]
        if count == tenth or count == args.questions:
            rss["1k" if count == tenth else "10k"] = process.memory_info().rss / 2**20
            log(f"{count} questions answered, server RSS {rss['1k' if count == tenth else '10k']:.1f} MB")

    counter = [0]

    def worker() -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            while not finished():
                with lock:
                    n = counter[0]
                    counter[0] += 1
                try:
                    one(client, n)
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(type(exc).__name__)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    time.sleep(1.0)  # late duplicates would arrive now
    with tracker.lock:
        duplicates = sum(max(0, c - 1) for c in tracker.count.values())
        failures = sum(tracker.failures.values())
    errors.extend(["failure reply"] * failures)
    rss_1k, rss_10k = rss.get("1k", 0.0), rss.get("10k", 0.0)
    figures: dict[str, object] = {
        "errors": len(errors),
        "duplicates": duplicates,
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "rss_mb_1k": round(rss_1k, 1),
        "rss_mb_10k": round(rss_10k, 1),
        "rss_growth_pct": round(100 * (rss_10k - rss_1k) / rss_1k, 1) if rss_1k else None,
        "questions": done[0],
        "seconds": round(elapsed, 1),
        "throughput_qps": round(done[0] / elapsed, 1),
        "concurrency": args.concurrency,
        "error_kinds": sorted(set(errors))[:10],
        "targets": {"errors": 0, "duplicates": 0, "rss_growth_pct_max": 10.0},
    }
    return figures


if __name__ == "__main__":
    main()
