"""``GET /healthz`` and Prometheus ``GET /metrics``.

The metrics are read from the database at scrape time, so they count every question the
bot answered — in Slack, Teams, the web chat or the CLI, in any process — and survive
restarts. Latencies are taken from the traces of answers stored since this server started.

Who sees what: source names and counts (the ``supportbot_source_*`` metrics, the number of
chunks in ``/healthz``) only go to a signed-in admin or a scraper sending
``Authorization: Bearer <SUPPORTBOT_METRICS_TOKEN>``; anyone else gets the bare status — a
private source's name is not public information.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from adapters.db import answers, feedback
from adapters.factory import Services
from adapters.providers.review_store import SqlReviewStore

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_SCAN_BATCH = 5000


def _redis_ping(url: str) -> None:
    import redis

    if url.startswith("redis+socket://"):
        url = "unix://" + url[len("redis+socket://") :]
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def health(
    services: Services, reviews: SqlReviewStore, *, details: bool = True
) -> tuple[bool, dict[str, str]]:
    """Check the index, the database and (when configured) the broker; (all ok, per-check text).

    ``details=False`` leaves the counts out (what anonymous callers see)."""
    checks: dict[str, str] = {}
    try:
        count = services.index.count()
        checks["index"] = f"ok ({count} chunks)" if details else "ok"
    except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
        checks["index"] = f"error: {type(exc).__name__}"
    try:
        reviews.ping()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"error: {type(exc).__name__}"
    redis_url = services.settings.redis_url
    if redis_url is not None:
        try:
            _redis_ping(redis_url.get_secret_value())
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = f"error: {type(exc).__name__}"
    return all(v.startswith("ok") for v in checks.values()), checks


class StoreCollector(Collector):
    """Prometheus metrics read from the answers, feedback and sources tables at scrape time."""

    def __init__(self, services: Services, reviews: SqlReviewStore, *, sources: bool = True) -> None:
        self.services = services
        self.reviews = reviews
        self.sources = sources  # whether the per-source metrics (names!) are included
        self._lock = threading.Lock()
        self._since = datetime.now(UTC)  # latencies: answers stored after this
        self._seen_at_since: set[str] = set()
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def _scan_latencies(self, conn: sa.Connection) -> None:
        query = (
            sa.select(answers.c.id, answers.c.created_at, answers.c.platform, answers.c.payload)
            .where(answers.c.created_at >= self._since)
            .order_by(answers.c.created_at)
            .limit(_SCAN_BATCH)
        )
        for row in conn.execute(query):
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
            if row.id in self._seen_at_since and created <= self._since:
                continue
            if created > self._since:
                self._since, self._seen_at_since = created, set()
            self._seen_at_since.add(row.id)
            trace = json.loads(row.payload).get("trace") or {}
            total_ms = (trace.get("timings_ms") or {}).get("total")
            if total_ms is None:
                continue
            seconds = float(total_ms) / 1000
            counts = self._buckets.setdefault(row.platform, [0] * (len(LATENCY_BUCKETS_S) + 1))
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self._sums[row.platform] = self._sums.get(row.platform, 0.0) + seconds

    def collect(self) -> Iterator[Any]:
        """The metric families (nothing but ``supportbot_database_up 0`` when the database is down)."""
        up = GaugeMetricFamily("supportbot_database_up", "1 when the database answered this scrape")
        questions = CounterMetricFamily("supportbot_questions", "Questions asked", labels=["platform"])
        answered = CounterMetricFamily(
            "supportbot_answers", "Questions answered with citations", labels=["platform"]
        )
        declined = CounterMetricFamily("supportbot_declines", "Questions declined", labels=["platform"])
        votes = CounterMetricFamily(
            "supportbot_votes",
            "Votes on answers (a changed vote moves to the new label)",
            labels=["platform", "vote"],
        )
        latency = HistogramMetricFamily(
            "supportbot_answer_latency_seconds",
            "Time to answer (since this server started)",
            labels=["platform"],
        )
        try:
            with self._lock, self.reviews.engine.connect() as conn:
                per: dict[str, dict[str, int]] = {}
                for platform, decision, n in conn.execute(
                    sa.select(answers.c.platform, answers.c.decision, sa.func.count()).group_by(
                        answers.c.platform, answers.c.decision
                    )
                ):
                    per.setdefault(platform, {})[decision] = int(n)
                vote_rows = conn.execute(
                    sa.select(feedback.c.platform, feedback.c.vote, sa.func.count()).group_by(
                        feedback.c.platform, feedback.c.vote
                    )
                ).all()
                self._scan_latencies(conn)
                buckets = {p: list(c) for p, c in self._buckets.items()}
                sums = dict(self._sums)
        except Exception as exc:  # noqa: BLE001 - a scrape reports, it does not fail
            log.warning("metrics: database unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for platform, by_decision in sorted(per.items()):
            questions.add_metric([platform], sum(by_decision.values()))
            answered.add_metric([platform], by_decision.get("answered", 0))
            declined.add_metric([platform], by_decision.get("declined", 0))
        for platform, vote, n in vote_rows:
            votes.add_metric([platform, vote], int(n))
        for platform, counts in sorted(buckets.items()):
            edges = [*(str(b) for b in LATENCY_BUCKETS_S), "+Inf"]
            latency.add_metric([platform], list(zip(edges, counts, strict=True)), sums[platform])
        yield from (questions, answered, declined, votes, latency)
        if self.sources:
            yield from self._sources()

    def _sources(self) -> Iterator[Any]:
        try:
            rows = self.services.source_store.list()
        except Exception:  # noqa: BLE001 - no sources table or no workers: no source metrics
            return
        if not rows:
            return
        status = GaugeMetricFamily(
            "supportbot_source_status", "1 for the source's current sync status", labels=["source", "status"]
        )
        docs = GaugeMetricFamily(
            "supportbot_source_documents", "Items synced from the source", labels=["source"]
        )
        last = GaugeMetricFamily(
            "supportbot_source_last_sync_timestamp_seconds",
            "When the source last finished a sync",
            labels=["source"],
        )
        for s in rows:
            status.add_metric([s.name, s.status], 1)
            docs.add_metric([s.name], s.documents)
            if s.last_sync_at is not None:
                at = s.last_sync_at if s.last_sync_at.tzinfo else s.last_sync_at.replace(tzinfo=UTC)
                last.add_metric([s.name], at.timestamp())
        yield from (status, docs, last)


def observability_router(services: Services, reviews: SqlReviewStore) -> APIRouter:
    """The router serving ``GET /healthz`` and ``GET /metrics`` (with its own registry)."""
    router = APIRouter()
    full = StoreCollector(services, reviews)
    public = StoreCollector(services, reviews, sources=False)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(full)
    public_registry = CollectorRegistry(auto_describe=False)
    public_registry.register(public)
    token = services.settings.metrics_token.get_secret_value() if services.settings.metrics_token else ""

    def authorised(request: Request) -> bool:
        """A scraper with the metrics token, or a signed-in admin."""
        sent = request.headers.get("authorization", "")
        if (
            token
            and sent.lower().startswith("bearer ")
            and hmac.compare_digest(sent[7:].strip().encode(), token.encode())
        ):
            return True
        auth = getattr(request.app.state, "web_auth", None)
        return auth is not None and auth.session(request) is not None

    @router.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> JSONResponse:
        ok, checks = health(services, reviews, details=authorised(request))
        return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        chosen = registry if authorised(request) else public_registry
        return Response(generate_latest(chosen), media_type=CONTENT_TYPE_LATEST)

    return router
