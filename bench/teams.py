"""Teams reply latency: activity received → answer card posted, over real HTTP.

    python bench/teams.py [--json] [--questions 100] [--dataset emanual_tv]

The real web app (adapters/web/app.py, Teams in local testing mode) runs under uvicorn on
127.0.0.1 with the offline default (ONNX MiniLM, embedded index, extractive generator) over
a BEIR corpus from ../shared/evaldata; a fake Bot Connector (tests/fakes/teams_connector.py)
receives the replies. Each question is a personal-chat message POSTed to /api/messages;
the clock runs from the POST until the connector receives the Adaptive Card reply.
Questions are sent one at a time, each in its own conversation (no follow-up history).
Target: p95 ≤ 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import httpx
from _common import EVALDATA, ROOT, emit, log  # noqa: I001

from adapters.factory import Services
from adapters.settings import Settings
from adapters.web.app import create_app
from bot.evaluation import percentile
from knowledge.loaders import iter_documents
from tests.fakes.teams_connector import Activities, FakeConnector, serve

TARGET_P95_MS = 1500.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--dataset", default="emanual_tv")
    args = parser.parse_args()
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(proxy, None)
    logging.basicConfig(level=logging.WARNING)  # stderr: stdout carries only the figures

    dataset = EVALDATA / args.dataset
    queries = [json.loads(line)["text"] for line in (dataset / "queries.jsonl").open()][: args.questions]
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-teams-") as tmp:
        # The bench measures answering, not the rate limiter (one user asks 100 questions).
        services = Services(
            Settings(  # type: ignore[call-arg]
                data_dir=Path(tmp), _env_file=None, rate_questions_per_user=0, rate_questions_per_conversation=0,
                teams_allow_unauthenticated=True,  # Teams local testing mode: the fake connector is on loopback
            )
        )
        t = time.perf_counter()
        report = services.ingestor.ingest(
            iter_documents([dataset / "corpus.jsonl"], source="bench", max_bytes=1 << 31), source="bench"
        )
        log(f"indexed {args.dataset}: {report.summary()} in {time.perf_counter() - t:.1f}s")
        services.decline_policy()  # calibrate before timing

        with FakeConnector() as connector, serve(create_app(services)) as base, httpx.Client(timeout=30) as http:
            acts = Activities(connector.service_url)

            def ask(text: str, n: int) -> tuple[float, bool]:
                conv = f"a:bench-{n}"
                activity = acts.personal(text, conversation=conv)
                started = time.perf_counter()
                response = http.post(f"{base}/api/messages", json=activity)
                response.raise_for_status()
                call = connector.wait_for(
                    lambda calls: next((c for c in calls if c.conversation == conv and c.card is not None), None),
                    timeout=30,
                )
                answered = "Sources" in [b.get("text") for b in call.card["body"]]
                return (call.at - started) * 1000, not answered

            for i, text in enumerate(queries[:3]):  # warm-up: model load, first queries
                ask(text, -1 - i)
            results = [ask(text, i) for i, text in enumerate(queries)]
            times = [ms for ms, _ in results]
            declined = sum(1 for _, was_declined in results if was_declined)

    figures: dict[str, object] = {
        "answer_p50_ms": round(percentile(times, 0.5), 1),
        "answer_p95_ms": round(percentile(times, 0.95), 1),
        "answer_max_ms": round(max(times), 1),
        "questions": len(times),
        "declined": declined,
        "target_p95_ms": TARGET_P95_MS,
        "meets_target": percentile(times, 0.95) <= TARGET_P95_MS,
        "dataset": args.dataset,
        "stack": "offline default (onnx MiniLM int8, local index, extractive), Teams local mode, fake connector",
    }
    emit("teams", figures, args.json)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
