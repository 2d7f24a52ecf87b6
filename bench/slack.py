"""Slack answer and ack latency: event received → answer posted, over real HTTP.

    python bench/slack.py [--json] [--questions 100] [--dataset emanual_tv]

The Slack app (adapters/slack, mounted by ``slack_router`` exactly as the web server does)
runs under uvicorn on 127.0.0.1 with the offline default (ONNX MiniLM, embedded index,
extractive generator) over a BEIR corpus from ../shared/evaldata; the fake Slack Web API
(tests/fakes/slack_server.py) receives the calls. Each question is a signed ``app_mention``
POSTed to /slack/events, followed by the ``message`` event Slack sends for the same mention
and, for every tenth question, a retry (``X-Slack-Retry-Num``); the clock runs from the
first POST until the fake receives the answer. ``duplicates`` counts answers beyond one
per question. Questions go one at a time, each in its own thread, after one warm-up
question. Ack latency is the HTTP round trip of signed ``/ask`` and ``/ingest`` commands
(``/ingest`` with an in-memory IngestQueue). Targets: answer p95 ≤ 1.5 s, ack p95 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
from _common import EVALDATA, emit, log  # noqa: I001

from adapters.factory import Services
from adapters.settings import Settings
from adapters.slack.http import slack_router
from adapters.slack.state import SlackState
from bot.evaluation import percentile
from bot.ports import JobStatus
from knowledge.loaders import iter_documents
from tests.fakes.slack_server import (
    BOT_USER,
    FakeSlack,
    command_body,
    event_body,
    mention,
    message,
    serve,
    signed_headers,
)

SECRET = "bench-signing-secret"
TARGET_ANSWER_P95_MS = 1500.0
TARGET_ACK_P95_MS = 100.0


class MemoryQueue:
    """An in-memory IngestQueue: every job is done at once (the bench measures the ack only)."""

    def __init__(self) -> None:
        self.jobs = 0

    def enqueue_ingest(self, target: str, requested_by: str, notify: Mapping[str, str]) -> str:
        self.jobs += 1
        return f"job-{self.jobs}"

    def enqueue_sync(self, source: str, requested_by: str = "", notify: Mapping[str, str] | None = None) -> str:
        return self.enqueue_ingest(source, requested_by, notify or {})

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id, "done", summary="added 0, changed 0, unchanged 1, removed 0, failed 0")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--dataset", default="emanual_tv")
    args = parser.parse_args()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        os.environ.pop(name, None)
    logging.basicConfig(level=logging.WARNING)  # stderr: stdout carries only the figures

    dataset = EVALDATA / args.dataset
    queries = [json.loads(line)["text"] for line in (dataset / "queries.jsonl").open()][: args.questions + 1]
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-slack-") as tmp, FakeSlack() as fake:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp),
            slack_bot_token="xoxb-bench",  # type: ignore[arg-type]
            slack_signing_secret=SECRET,  # type: ignore[arg-type]
            slack_api_url=fake.api_url,
            slack_admins=["UADMIN"],
            # The bench measures answering, not the rate limiter (one user asks 100 questions).
            rate_questions_per_user=0,
            rate_questions_per_conversation=0,
        )
        services = Services(settings)
        t = time.perf_counter()
        report = services.ingestor.ingest(
            iter_documents([dataset / "corpus.jsonl"], source="bench", max_bytes=1 << 31), source="bench"
        )
        log(f"indexed {args.dataset}: {report.summary()} in {time.perf_counter() - t:.1f}s")
        services.decline_policy()  # calibrate before timing

        # In-process dedup (no Redis needed for the bench); the tests cover the Redis path.
        bot = services.slack_bot(state=SlackState(None), ingest_queue=MemoryQueue())
        from fastapi import FastAPI

        web = FastAPI()
        web.include_router(slack_router(services, bot))
        with serve(web) as base, httpx.Client(timeout=30, trust_env=False) as http:

            def post(body: str, *, form: bool = False, extra: dict[str, str] | None = None) -> float:
                kind = "application/x-www-form-urlencoded" if form else "application/json"
                headers = {**signed_headers(SECRET, body, content_type=kind), **(extra or {})}
                started = time.perf_counter()
                response = http.post(f"{base}/slack/events", content=body, headers=headers)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                return elapsed

            answer_ms: list[float] = []
            declined = 0
            for i, question in enumerate(queries):
                channel = f"CB{i:04d}"
                ts = fake.add_message(channel, f"<@{BOT_USER}> {question}")
                started = time.perf_counter()
                post(event_body(mention(channel, ts, question)))
                post(event_body(message(channel, ts, f"<@{BOT_USER}> {question}")))
                if i % 10 == 0:
                    post(event_body(mention(channel, ts, question)), extra={"X-Slack-Retry-Num": "1"})
                [answer] = fake.wait_for(lambda ch=channel: fake.answers(ch), timeout=60)
                if i == 0:
                    continue  # warm-up: loads the model and opens the connections
                answer_ms.append((answer.at - started) * 1000)
                declined += "couldn't find this in the knowledge base" in answer.args.get("text", "")
            time.sleep(0.5)  # let any late duplicate arrive before counting
            duplicates = len(fake.answers()) - len(queries)
            log(f"answered {len(answer_ms)} questions ({declined} declined)")

            ack_ms: list[float] = []
            for i in range(100):
                if i % 2:
                    body = command_body("/ingest", "handbook", fake.response_url(), user="UADMIN")
                else:
                    body = command_body("/ask", queries[1 + i % len(queries[1:])], fake.response_url())
                ack_ms.append(post(body, form=True) * 1000)
            time.sleep(1.0)  # let the /ask answers finish before shutting down
        bot.close()

    figures: dict[str, object] = {
        "questions": len(answer_ms),
        "answer_p50_ms": round(percentile(answer_ms, 0.5), 1),
        "answer_p95_ms": round(percentile(answer_ms, 0.95), 1),
        "ack_p50_ms": round(percentile(ack_ms, 0.5), 1),
        "ack_p95_ms": round(percentile(ack_ms, 0.95), 1),
        "duplicates": duplicates,
        "declined": declined,
        "target_answer_p95_ms": TARGET_ANSWER_P95_MS,
        "target_ack_p95_ms": TARGET_ACK_P95_MS,
        "dataset": args.dataset,
    }
    emit("slack", figures, args.json)


if __name__ == "__main__":
    main()
