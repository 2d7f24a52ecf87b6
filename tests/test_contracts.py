"""The contracts of tests/contracts.py, each run over every offline implementation of its port
(a fixture parametrised over them): the default extractive generator, the llama.cpp generator
with a stand-in binding, the resilient wrappers the question path uses (adapters/resilience.py),
the SQL stores on SQLite and PostgreSQL, the ingest pipeline, the folder connector and the
rate limiters (Redis and in-process). The cloud providers and their resilient wrappers run
against their fake servers in tests/test_cloud_providers.py; the ingest queue on a real
worker in tests/test_workers.py."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from adapters.db import Database
from adapters.factory import Services
from adapters.providers.llama_cpp_generator import LlamaCppGenerator
from adapters.providers.local_index import LocalIndex
from adapters.providers.onnx_embedder import OnnxEmbedder
from adapters.providers.source_store import SqlSourceStore
from adapters.providers.sql_store import SqlAnswerStore, SqlDocumentStore
from adapters.providers.verified_store import SqlVerifiedStore
from adapters.ratelimit import RedisRateLimiter
from adapters.resilience import (
    ResilientEmbedder,
    ResilientGenerator,
    ResilientIndex,
    RetryBudget,
    SpoolingAnswerStore,
    resilient_index,
)
from adapters.settings import Settings
from bot.errors import ProviderRejected, ProviderUnavailable
from bot.extractive import ExtractiveGenerator
from bot.ports import (
    AnswerStore,
    ChunkIndex,
    Connector,
    DocumentStore,
    Embedder,
    GenerationRequest,
    Generator,
    Ingest,
    QueryRewriter,
    RateLimiter,
    VerifiedStore,
)
from bot.ratelimit import MemoryRateLimiter
from bot.rewrite import RuleRewriter
from bot.types import Turn
from bot.verified import VerifiedFirst, VerifiedRanker
from knowledge.connectors import ConnectorContext, make_connector
from knowledge.fetch import Fetcher, FetchPolicy
from knowledge.pipeline import Ingestor
from tests.contracts import (
    AnswerStoreContract,
    CandidateScorerContract,
    ChunkIndexContract,
    ChunkLookupContract,
    ConnectorContract,
    DocumentStoreContract,
    EmbedderContract,
    GeneratorContract,
    IngestContract,
    QueryRewriterContract,
    RateLimiterContract,
    SyncStateStoreContract,
    VerifiedStoreContract,
)
from tests.fakes.connectors_server import ConfluenceFake, GitHubFake, NotionFake, Page, ZendeskFake
from tests.fakes.openai_server import default_reply

_EMBEDDER = OnnxEmbedder()


@pytest.fixture(scope="module", autouse=True)
def _collect_at_the_end() -> Iterator[None]:
    # Free this module's garbage (indexes, databases, clients) here, not during a later module's test.
    yield
    gc.collect()


def no_sleep(_: float) -> None:
    pass


# -- generators ------------------------------------------------------------------------------------
class FakeLlama:
    """Stands in for ``llama_cpp.Llama``: built the same way, and ``create_chat_completion``
    answers like a small grounded model (the first sentence of passage [1], cited), in the
    binding's reply shapes (a dict, or a stream of delta chunks)."""

    instances: list[FakeLlama] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[dict[str, Any]] = []
        FakeLlama.instances.append(self)

    def create_chat_completion(self, *, messages: list[dict[str, str]], stream: bool = False, **params: Any) -> Any:
        self.calls.append({"messages": messages, "stream": stream, **params})
        if sum(len(m["content"]) for m in messages) > 4 * self.kwargs["n_ctx"]:
            raise ValueError("Requested tokens exceed context window")
        text = default_reply({"messages": messages})
        if not stream:
            return {"choices": [{"message": {"role": "assistant", "content": text}}]}
        pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
        return iter(
            [{"choices": [{"delta": {"role": "assistant"}}]}]
            + [{"choices": [{"delta": {"content": p}}]} for p in pieces]
            + [{"choices": [{"delta": {}, "finish_reason": "stop"}]}]
        )


def _llama(tmp_path: Path) -> LlamaCppGenerator:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    return LlamaCppGenerator(model, n_ctx=2048, llama=FakeLlama)


def _verified_first(tmp_path: Path, inner: Generator) -> Generator:
    ranker = VerifiedRanker(lambda: [], _EMBEDDER, LocalIndex(tmp_path / "verified.sqlite"))
    return VerifiedFirst(inner, ranker)


GENERATORS = ["extractive", "extractive-resilient", "verified-first", "llama-cpp", "llama-cpp-resilient"]


@pytest.fixture(params=GENERATORS)
def generator(request: pytest.FixtureRequest, tmp_path: Path) -> Generator:
    budget = RetryBudget(budget_s=1.0, sleep=no_sleep)
    built: dict[str, Any] = {
        "extractive": lambda: ExtractiveGenerator(),
        "extractive-resilient": lambda: ResilientGenerator(ExtractiveGenerator(), budget),
        # What the factory builds for the question path: VerifiedFirst around the generator.
        "verified-first": lambda: _verified_first(tmp_path, ExtractiveGenerator()),
        "llama-cpp": lambda: _llama(tmp_path),
        "llama-cpp-resilient": lambda: ResilientGenerator(_llama(tmp_path), budget),
    }
    gen: Generator = built[request.param]()
    return gen


class TestGenerators(GeneratorContract):
    pass


class TestLlamaCppBinding:
    def test_model_and_prompt_go_through_the_binding(self, tmp_path: Path) -> None:
        gen = _llama(tmp_path)
        assert FakeLlama.instances == [] or FakeLlama.instances[-1].kwargs["model_path"] != str(tmp_path / "tiny.gguf")
        gen.generate(GeneratorContract.request)
        gen.generate(GeneratorContract.request)
        llm = FakeLlama.instances[-1]  # loaded once, on first use
        assert llm.kwargs["model_path"] == str(tmp_path / "tiny.gguf") and llm.kwargs["n_ctx"] == 2048
        assert len(llm.calls) == 2 and llm.calls[0]["temperature"] == 0.0
        assert llm.calls[0]["messages"][0]["role"] == "system"
        assert '<passage n="1"' in llm.calls[0]["messages"][-1]["content"]

    def test_a_prompt_too_long_for_the_context_is_rejected(self, tmp_path: Path) -> None:
        gen = LlamaCppGenerator((tmp_path / "m.gguf"), n_ctx=16, llama=FakeLlama)
        (tmp_path / "m.gguf").write_bytes(b"GGUF")
        with pytest.raises(ProviderRejected, match="context window"):
            gen.generate(GeneratorContract.request)
        with pytest.raises(ProviderRejected):
            list(gen.stream(GeneratorContract.request))

    def test_no_passages_is_not_found(self, tmp_path: Path) -> None:
        out = _llama(tmp_path).generate(GenerationRequest(question="Anything?", passages=()))
        assert out.not_found


# -- embedders and indexes (the question path wraps them) ------------------------------------------
@pytest.fixture
def embedder() -> Embedder:
    return _EMBEDDER


class TestResilientEmbedder(EmbedderContract):
    # The plain OnnxEmbedder: tests/test_offline_providers.py.
    @pytest.fixture
    def embedder(self) -> Embedder:
        return ResilientEmbedder(_EMBEDDER, RetryBudget(budget_s=1.0, sleep=no_sleep))


@pytest.fixture(params=["local", "local-resilient"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChunkIndex]:
    local = LocalIndex(tmp_path / "index.sqlite")
    # What the factory builds for the question path: the wrapper keeps the scoring capability.
    wrapped = resilient_index(local, RetryBudget(budget_s=1.0, sleep=no_sleep))
    yield local if request.param == "local" else wrapped


class TestIndexes(ChunkIndexContract, CandidateScorerContract):
    def test_the_resilient_wrapper_retries_reads(self, tmp_path: Path) -> None:
        class Flaky(LocalIndex):
            fails = 2

            def count(self) -> int:
                if self.fails:
                    self.fails -= 1
                    raise ProviderUnavailable("blip")
                return super().count()

        flaky = Flaky(tmp_path / "flaky.sqlite")
        assert isinstance(resilient_index(flaky, RetryBudget(budget_s=1.0, sleep=no_sleep)), ResilientIndex)
        assert resilient_index(flaky, RetryBudget(budget_s=1.0, sleep=no_sleep)).count() == 0


class TestLocalIndexLookup(ChunkLookupContract):
    @pytest.fixture
    def index(self, tmp_path: Path) -> Iterator[ChunkIndex]:
        local = LocalIndex(tmp_path / "index.sqlite")
        yield local


# -- query rewriters -------------------------------------------------------------------------------
class TestRuleRewriter(QueryRewriterContract):
    @pytest.fixture
    def rewriter(self) -> QueryRewriter:
        return RuleRewriter()

    def test_carries_the_topic_words(self) -> None:
        history = (Turn("user", "How do I install the CLI?"), Turn("assistant", "Run the installer [1]."))
        assert RuleRewriter().rewrite("Does it work on Linux?", history) == "Does it work on Linux? install cli"


# -- stores, on SQLite and PostgreSQL --------------------------------------------------------------
@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    yield db
    if db._engine is not None:
        db.engine.dispose()


@pytest.fixture(params=["sql", "sql-spooling"])
def answer_store(request: pytest.FixtureRequest, database: Database, tmp_path: Path) -> AnswerStore:
    store = SqlAnswerStore(database)
    if request.param == "sql":
        return store
    # What the question path uses: votes the database refuses are spooled and replayed.
    return SpoolingAnswerStore(store, tmp_path / "vote-spool.jsonl")


class TestAnswerStores(AnswerStoreContract):
    pass


@pytest.fixture
def document_store(database: Database) -> DocumentStore:
    return SqlDocumentStore(database)


class TestDocumentStores(DocumentStoreContract):
    pass


@pytest.fixture
def sync_store(database: Database) -> SqlSourceStore:
    return SqlSourceStore(database)


@pytest.fixture
def source_id(sync_store: SqlSourceStore, tmp_path: Path) -> str:
    return sync_store.add("help", "folder", {"path": str(tmp_path)}).id


class TestSyncStateStores(SyncStateStoreContract):
    pass


@pytest.fixture
def verified_store(database: Database) -> VerifiedStore:
    return SqlVerifiedStore(database)


class TestVerifiedStores(VerifiedStoreContract):
    @pytest.fixture(params=["sql"])
    def answer_store(self, request: pytest.FixtureRequest, database: Database) -> AnswerStore:
        return SqlAnswerStore(database)


# -- ingest, connectors, limits --------------------------------------------------------------------
class TestIngestor(IngestContract):
    @pytest.fixture
    def index(self, tmp_path: Path) -> Iterator[ChunkIndex]:
        local = LocalIndex(tmp_path / "index.sqlite")
        yield local

    @pytest.fixture
    def ingest(self, index: ChunkIndex, tmp_path: Path) -> Ingest:
        return Ingestor(_EMBEDDER, index, SqlDocumentStore(f"sqlite:///{tmp_path}/docs.db"))


class TestFolderConnector(ConnectorContract):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Connector:
        folder = tmp_path / "kb"
        folder.mkdir()
        (folder / "vpn.md").write_text("# VPN\n\nInstall the client, then sign in with your badge.\n")
        (folder / "leave.md").write_text("# Leave\n\nParental leave is sixteen weeks.\n")
        ctx = ConnectorContext(source="kb", options={"path": str(folder)}, fetcher=Fetcher(FetchPolicy()))
        return make_connector("folder", ctx)

    @pytest.fixture
    def expected_items(self, connector: Connector) -> dict[str, str]:
        ids = sorted(i.external_id for i in connector.items())
        return dict(zip(ids, ["Leave", "VPN"], strict=True))


_SAAS = {  # kind: (fake server, the two items' keys, source options)
    "confluence": (ConfluenceFake, ("101", "102"), lambda f: {"url": f.url, "space": f.space_key}),
    "zendesk": (ZendeskFake, ("1", "2"), lambda f: {"url": f.url}),
    "github": (GitHubFake, ("docs/vpn.md", "docs/leave.md"),
               lambda f: {"repo": f.repo, "api_url": f.url, "web_url": "https://github.com"}),
    "notion": (NotionFake, ("p1", "p2"), lambda f: {"api_url": f.url}),
}


class TestSaaSConnectors(ConnectorContract):
    """Confluence, Zendesk, GitHub and Notion, through their HTTP APIs served by tests/fakes."""

    @pytest.fixture(params=sorted(_SAAS))
    def connector(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Connector]:
        fake_type, keys, options = _SAAS[request.param]
        markdown = request.param in ("github", "notion")
        with fake_type() as fake:
            for key, (title, text) in zip(keys, [("VPN", "Install the client, then sign in."),
                                                 ("Leave", "Parental leave is sixteen weeks.")], strict=True):
                fake.pages[key] = Page(title, f"# {title}\n\n{text}\n" if markdown else f"<h2>Steps</h2><p>{text}</p>")
            services = Services(Settings(
                _env_file=None,  # type: ignore[call-arg]
                data_dir=tmp_path, fetch_allow_hosts=["127.0.0.1"], fetch_timeout_s=5,
                confluence_email=ConfluenceFake.email, confluence_api_token=SecretStr(ConfluenceFake.token),
                zendesk_email=ZendeskFake.email, zendesk_api_token=SecretStr(ZendeskFake.token),
                github_token=SecretStr(GitHubFake.token), notion_token=SecretStr(NotionFake.token),
            ))
            source = services.source_store.add(request.param, request.param, options(fake))
            self._titles = {key: title for key, title in zip(keys, ("VPN", "Leave"), strict=True)}
            yield services.connector(source)
            services.fetcher.close()

    @pytest.fixture
    def expected_items(self, connector: Connector) -> dict[str, str]:
        return dict(self._titles)


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryRateLimiter()
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"), socket_timeout=5)
    yield RedisRateLimiter(redis_client=client)
    client.close()


class TestRateLimiters(RateLimiterContract):
    pass

