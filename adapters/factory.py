"""The composition root: reads Settings once and builds the services.

Only entry points (CLI, web server, Socket Mode runner, Celery worker) use it, and nothing
else reads the settings from the environment: ``build()`` is where that happens. Every
service is built lazily, at most once per ``Services``, and typed as its port where it has
one. SDKs are imported lazily here, only for the providers that are selected. The SQL stores
share one :class:`~adapters.db.Database` (one engine and pool per process).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from adapters.settings import Settings
from bot.errors import ConfigError, ProviderError

# Everything else is imported where it is built: a command loads only what it uses (an
# unchanged re-ingest never loads the answering core).
if TYPE_CHECKING:  # only for annotations
    from slack_sdk import WebClient

    from adapters.celery_queue import JobStore
    from adapters.db import Database
    from adapters.providers.catalog import KnowledgeCatalog
    from adapters.providers.onnx_embedder import OnnxEmbedder
    from adapters.providers.review_store import SqlReviewStore
    from adapters.providers.source_store import SqlSourceStore
    from adapters.resilience import RetryBudget
    from adapters.slack.app import SlackBot, SlackOptions
    from adapters.slack.state import SlackState
    from adapters.teams.activity import Incoming
    from adapters.teams.handler import TeamsBot, TeamsOptions
    from adapters.teams.protocol import ChannelGateway
    from adapters.web.auth import SessionRevocations, WebAuth
    from bot.access import AccessResolver
    from bot.answering import AnswerService, DeclinePolicy
    from bot.conversation import Conversation, JobReporter
    from bot.feedback import FeedbackRanker, VoteRecord
    from bot.ports import (
        AnswerStore,
        ChunkIndex,
        ChunkLookup,
        Connector,
        DocumentStore,
        Embedder,
        Generator,
        IngestQueue,
        Notifier,
        QueryRewriter,
        RateLimiter,
        Reranker,
        VerifiedStore,
    )
    from bot.ratelimit import Throttle
    from bot.retrieval import Retriever
    from bot.types import Platform
    from bot.verified import VerifiedRanker, VerifiedService
    from knowledge.fetch import Fetcher
    from knowledge.pipeline import Ingestor
    from knowledge.sources import Source, Syncer

log = logging.getLogger(__name__)


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


class Services:
    """Lazily built services for one Settings; each is built at most once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def data_dir(self) -> Path:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        return self.settings.data_dir

    @cached_property
    def onnx_embedder(self) -> OnnxEmbedder:
        """The offline embedder as configured (what ``embedder`` is with SUPPORTBOT_EMBEDDER=onnx),
        typed as itself: entry points prepare (worker) or preload (CLI) its model."""
        from adapters.providers.onnx_embedder import OnnxEmbedder

        s = self.settings
        return OnnxEmbedder(
            s.onnx_model_dir,
            pooling=s.onnx_pooling,
            max_length=s.onnx_max_length,
            threads=s.onnx_threads,
            quantize=s.onnx_int8,
            cache_dir=s.data_dir / "models",
        )

    @cached_property
    def embedder(self) -> Embedder:
        s = self.settings
        if s.embedder == "onnx":
            return self.onnx_embedder
        if s.embedder == "openai":
            from adapters.providers.openai_provider import OpenAIEmbedder, openai_client

            key = _secret(s.openai_api_key)
            if not key:
                raise ConfigError("SUPPORTBOT_EMBEDDER=openai needs OPENAI_API_KEY")
            # max_retries=0: one retry owner per boundary — ResilientEmbedder on the question
            # path, Celery's autoretry_for in the worker; SDK retries would multiply both.
            return OpenAIEmbedder(
                openai_client(key, s.openai_base_url, s.provider_timeout_s, max_retries=0),
                model=s.openai_embedding_model,
            )
        from adapters.providers.cohere_provider import CohereEmbedder, cohere_client

        key = _secret(s.cohere_api_key)
        if not key:
            raise ConfigError("SUPPORTBOT_EMBEDDER=cohere needs COHERE_API_KEY")
        # max_retries=0: as above, ResilientEmbedder or Celery owns the retries.
        return CohereEmbedder(
            cohere_client(key, s.cohere_base_url, s.provider_timeout_s, max_retries=0), model=s.cohere_embed_model
        )

    @cached_property
    def index(self) -> ChunkIndex:
        s = self.settings
        if s.index == "local":
            from adapters.providers.local_index import LocalIndex

            return LocalIndex(self.data_dir / "index.sqlite")
        from adapters.providers.pinecone_index import PineconeIndex, pinecone_client

        key = _secret(s.pinecone_api_key)
        if not key:
            raise ConfigError("SUPPORTBOT_INDEX=pinecone needs PINECONE_API_KEY")
        return PineconeIndex(
            pinecone_client(key, s.pinecone_host), index_name=s.pinecone_index, namespace=s.pinecone_namespace
        )

    @cached_property
    def reranker(self) -> Reranker | None:
        s = self.settings
        if s.reranker == "none":
            return None
        if s.reranker == "cross-encoder":
            from adapters.providers.cross_encoder import OnnxCrossEncoder

            if s.cross_encoder_dir is None:
                raise ConfigError("SUPPORTBOT_RERANKER=cross-encoder needs SUPPORTBOT_CROSS_ENCODER_DIR")
            return OnnxCrossEncoder(s.cross_encoder_dir)
        from adapters.providers.cohere_provider import CohereReranker, cohere_client

        key = _secret(s.cohere_api_key)
        if not key:
            raise ConfigError("SUPPORTBOT_RERANKER=cohere needs COHERE_API_KEY")
        reranker = CohereReranker(
            # max_retries=0: ResilientReranker owns the retries, within provider_retry_budget_s.
            cohere_client(key, s.cohere_base_url, s.provider_timeout_s, max_retries=0), model=s.cohere_rerank_model
        )
        from adapters.resilience import ResilientReranker

        return ResilientReranker(reranker, None, self.retry_budget)

    @cached_property
    def database(self) -> Database:
        """The one database every SQL store of this process uses (engine made on first use)."""
        from adapters.db import Database

        return Database(self.settings.sqlalchemy_url)

    @cached_property
    def document_store(self) -> DocumentStore:
        from adapters.providers.sql_store import SqlDocumentStore

        return SqlDocumentStore(self.database)

    @cached_property
    def answer_store(self) -> AnswerStore:
        from adapters.providers.sql_store import SqlAnswerStore

        return SqlAnswerStore(self.database)

    @property
    def _lookup(self) -> ChunkLookup | None:
        """The index, when it can return chunks by id (the extractive answerer reads past a chunk boundary)."""
        from bot.ports import ChunkLookup

        return self.index if isinstance(self.index, ChunkLookup) else None

    @property
    def generator_kind(self) -> str:
        """The generator in use: ``auto`` is ``openai`` when OPENAI_API_KEY is set, else ``extractive``."""
        s = self.settings
        if s.generator != "auto":
            return s.generator
        return "openai" if _secret(s.openai_api_key) else "extractive"

    @cached_property
    def generator(self) -> Generator:
        s = self.settings
        kind = self.generator_kind
        if kind == "extractive":
            from bot.extractive import ExtractiveGenerator

            return ExtractiveGenerator(lookup=self._lookup)
        if kind == "openai":
            from adapters.providers.openai_provider import OpenAIGenerator, openai_client

            key = _secret(s.openai_api_key)
            if not key and not s.openai_base_url:
                raise ConfigError("SUPPORTBOT_GENERATOR=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL)")
            from adapters.resilience import ResilientGenerator

            return ResilientGenerator(
                OpenAIGenerator(
                    # max_retries=0: ResilientGenerator owns the retries, within provider_retry_budget_s.
                    openai_client(key or "unused", s.openai_base_url, s.provider_timeout_s, max_retries=0),
                    model=s.openai_model,
                ),
                self.retry_budget,
            )
        from adapters.providers.llama_cpp_generator import LlamaCppGenerator

        if s.gguf_path is None:
            raise ConfigError("SUPPORTBOT_GENERATOR=llama-cpp needs SUPPORTBOT_GGUF_PATH")
        return LlamaCppGenerator(s.gguf_path)

    @cached_property
    def answers(self) -> AnswerService:
        from bot.answering import AnswerService
        from bot.extractive import ExtractiveGenerator
        from bot.verified import VerifiedFirst

        fallback = None if isinstance(self.generator, ExtractiveGenerator) else ExtractiveGenerator(lookup=self._lookup)
        return AnswerService(
            self.retriever,
            VerifiedFirst(self.generator, self.verified_ranker),
            self.resilient_answer_store,
            policy=self.decline_policy,
            fallback=fallback,
            rewriter=self.rewriter,
            k=self.settings.top_k,
        )

    @cached_property
    def rewriter(self) -> QueryRewriter | None:
        """The LLM follow-up rewrite when an OpenAI(-compatible) generator is configured."""
        s = self.settings
        if self.generator_kind != "openai":
            return None
        from adapters.providers.openai_provider import OpenAIRewriter, openai_client

        key = _secret(s.openai_api_key)
        return OpenAIRewriter(
            lambda: openai_client(key or "unused", s.openai_base_url, s.provider_timeout_s), model=s.openai_model
        )

    def decline_policy(self) -> DeclinePolicy:
        """The policy calibrated for this knowledge base (recomputed when the index changes)."""
        from bot.calibration import load_or_calibrate

        return load_or_calibrate(self.data_dir / "calibration.json", self.answers)

    @cached_property
    def access(self) -> AccessResolver:
        from bot.access import AccessResolver

        s = self.settings
        return AccessResolver(
            {k: frozenset(v) for k, v in s.access_channel_groups.items()},
            {k: frozenset(v) for k, v in s.access_user_groups.items()},
        )

    @cached_property
    def feedback_ranker(self) -> FeedbackRanker:
        from bot.feedback import FeedbackConfig, FeedbackRanker

        store = self.answer_store

        def votes() -> list[VoteRecord]:
            from sqlalchemy import exc as sa_exc  # here: a command that ranks nothing never loads SQLAlchemy

            # A database hiccup must not fail the search: rank without votes this time.
            try:
                return store.vote_records()
            except (sa_exc.SQLAlchemyError, ProviderError) as exc:
                log.warning("feedback ranking skipped: votes unavailable (%s)", type(exc).__name__)
                return []

        return FeedbackRanker(votes, self.embedder, FeedbackConfig(enabled=self.settings.feedback_ranking))

    @cached_property
    def retriever(self) -> Retriever:
        from adapters.resilience import ResilientEmbedder, resilient_index
        from bot.retrieval import RetrievalConfig, Retriever

        config = replace(RetrievalConfig(), candidates=self.settings.candidates)

        # Query-path reads are retried within the budget; ingest writes go to the raw providers.
        # A remote index's reads are also bounded by it: Pinecone's REST data plane retries 5xx
        # on its own fixed terms, which no client setting reaches.
        return Retriever(
            ResilientEmbedder(self.embedder, self.retry_budget),
            resilient_index(self.index, self.retry_budget, bounded=self.settings.index != "local"),
            self.reranker,
            config,
            feedback=self.feedback_ranker if self.settings.feedback_ranking else None,
            verified=self.verified_ranker,
        )

    @cached_property
    def ingestor(self) -> Ingestor:
        from knowledge.pipeline import Ingestor

        s = self.settings
        return Ingestor(
            self.embedder, self.index, self.document_store, chunk_size=s.chunk_size, chunk_overlap=s.chunk_overlap
        )

    # --- workers and sources -----------------------------------------------------------------------
    @cached_property
    def fetcher(self) -> Fetcher:
        """The one way to fetch URLs (SSRF rules, size and time limits from the settings)."""
        from knowledge.fetch import Fetcher, FetchPolicy

        s = self.settings
        policy = FetchPolicy(
            allow_hosts=frozenset(s.fetch_allow_hosts),
            max_bytes=int(s.fetch_max_mb * 1024 * 1024),
            timeout_s=s.fetch_timeout_s,
        )
        return Fetcher(policy)

    @cached_property
    def source_store(self) -> SqlSourceStore:
        from adapters.providers.source_store import SqlSourceStore

        return SqlSourceStore(self.database)

    @cached_property
    def sync_ingestor(self) -> Ingestor:
        """An Ingestor whose runs can be resumed under the same run id (what syncs use)."""
        from knowledge.pipeline import Ingestor

        s = self.settings
        return Ingestor(
            self.embedder,
            self.index,
            self.document_store,
            chunk_size=s.chunk_size,
            chunk_overlap=s.chunk_overlap,
            batch_chunks=s.sync_batch_chunks,
        )

    @cached_property
    def syncer(self) -> Syncer:
        from knowledge.sources import Syncer

        return Syncer(self.sync_ingestor, self.source_store)

    def connector(self, source: Source) -> Connector:
        """The connector for a registered source, with credentials from the settings."""
        from knowledge.connectors import ConnectorContext, make_connector

        s = self.settings
        credentials = {
            "confluence_email": s.confluence_email or "",
            "confluence_api_token": _secret(s.confluence_api_token) or "",
            "zendesk_email": s.zendesk_email or "",
            "zendesk_api_token": _secret(s.zendesk_api_token) or "",
            "github_token": _secret(s.github_token) or "",
            "notion_token": _secret(s.notion_token) or "",
        }
        ctx = ConnectorContext(
            source=source.name,
            options=source.options,
            fetcher=self.fetcher,
            credentials=credentials,
            access=source.access,
            max_bytes=int(s.max_file_mb * 1024 * 1024),
        )
        return make_connector(source.kind, ctx)

    def _redis_url(self) -> str:
        url = _secret(self.settings.redis_url)
        if not url:
            raise ConfigError("background jobs need REDIS_URL (supportbot serve starts an embedded Redis without it)")
        return url

    @cached_property
    def ingest_queue(self) -> IngestQueue:
        """The IngestQueue port on Celery (tasks sent by name); needs SUPPORTBOT_REDIS_URL."""
        from adapters.celery_queue import CeleryIngestQueue

        return CeleryIngestQueue(self._redis_url(), queue=self.settings.worker_queue)

    @cached_property
    def job_store(self) -> JobStore:
        """Job progress in Redis, as the workers write it; needs SUPPORTBOT_REDIS_URL."""
        from adapters.celery_queue import JobStore, redis_client

        return JobStore(redis_client(self._redis_url()))
    # --- limits and resilience (issue 8) -----------------------------------------------------------
    @cached_property
    def rate_limiter(self) -> RateLimiter:
        """Redis-backed counts when REDIS_URL is set (shared by every process), else in-process."""
        from adapters.ratelimit import RedisRateLimiter
        from bot.ratelimit import MemoryRateLimiter

        url = _secret(self.settings.redis_url)
        return RedisRateLimiter(url) if url else MemoryRateLimiter()

    @cached_property
    def throttle(self) -> Throttle:
        """Per-user and per-conversation limits on questions and ingests, from the settings."""
        from bot.ratelimit import Limit, RateLimits, Throttle

        s = self.settings
        limits = RateLimits(
            questions_per_user=Limit(s.rate_questions_per_user, s.rate_questions_window_s),
            questions_per_conversation=Limit(s.rate_questions_per_conversation, s.rate_questions_window_s),
            ingests_per_user=Limit(s.rate_ingests_per_user, s.rate_ingests_window_s),
            ingests_per_conversation=Limit(s.rate_ingests_per_conversation, s.rate_ingests_window_s),
            votes_per_user=Limit(s.rate_votes_per_user, s.rate_votes_window_s),
            votes_per_client=Limit(s.rate_votes_per_address, s.rate_votes_window_s),
        )
        return Throttle(self.rate_limiter, limits)

    @cached_property
    def retry_budget(self) -> RetryBudget:
        """The retry policy of question-path provider calls (one owner: the SDK retries are off)."""
        from adapters.resilience import RetryBudget

        return RetryBudget(budget_s=self.settings.provider_retry_budget_s)

    @cached_property
    def resilient_answer_store(self) -> AnswerStore:
        """The answer store with a durable spool for votes the database refuses (replayed later)."""
        from adapters.resilience import SpoolingAnswerStore

        return SpoolingAnswerStore(self.answer_store, self.data_dir / "vote-spool.jsonl")

    # --- verified answers (issue 17) ---------------------------------------------------------------
    @cached_property
    def verified_store(self) -> VerifiedStore:
        from adapters.providers.verified_store import SqlVerifiedStore

        return SqlVerifiedStore(self.database)

    @cached_property
    def verified_ranker(self) -> VerifiedRanker:
        from bot.verified import VerifiedRankConfig, VerifiedRanker

        config = VerifiedRankConfig(min_similarity=self.settings.verified_min_similarity)
        store = self.verified_store
        return VerifiedRanker(lambda: store.records(with_uses=False), self.embedder, self.index, config)

    @cached_property
    def verified(self) -> VerifiedService:
        """Experts' replies marked as answers: checks, the verified documents, the admin actions."""
        from bot.verified import Experts, VerifiedService

        s = self.settings
        experts = Experts(
            {k: frozenset(v) for k, v in s.experts.items()},
            {"slack": frozenset(s.slack_admins), "teams": frozenset(s.teams_admins)},
        )
        ranker = self.verified_ranker
        return VerifiedService(
            self.verified_store,
            self.ingestor,
            self.embedder,
            experts,
            review_days=s.verified_review_days,
            on_change=lambda: ranker.refresh(force=True),
        )


    # --- chat: the conversation core and the Slack and Teams bots (issue 15) ------------------------
    def conversation(
        self,
        *,
        answers: AnswerService | None = None,
        ingest_queue: IngestQueue | Callable[[], IngestQueue] | None = None,
    ) -> Conversation:
        """The conversation core both chat adapters call. The ingest queue defaults to this
        root's Celery queue, looked up at the first ingest (it needs Redis; without it the bot
        still answers and ``ingest`` says it is unavailable)."""
        from bot.conversation import Conversation
        from bot.types import Platform

        s = self.settings
        return Conversation(
            answers or self.answers,
            self.access,
            admins={Platform.SLACK: s.slack_admins, Platform.TEAMS: s.teams_admins},
            throttle=self.throttle,
            ingest_queue=ingest_queue or (lambda: self.ingest_queue),
        )

    @cached_property
    def slack_client(self) -> WebClient:
        """The Slack WebClient (bot token, the configured API URL, 429s waited out)."""
        from adapters.slack.app import make_client

        token = _secret(self.settings.slack_bot_token)
        if not token:
            raise ConfigError("Slack needs SLACK_BOT_TOKEN")
        return make_client(token, self.settings.slack_api_url)

    def slack_bot(
        self,
        *,
        socket_mode: bool = False,
        answers: AnswerService | None = None,
        client: WebClient | None = None,
        state: SlackState | None = None,
        ingest_queue: IngestQueue | Callable[[], IngestQueue] | None = None,
        options: SlackOptions | None = None,
        directory: Callable[[str], frozenset[str]] | None = None,
    ) -> SlackBot:
        """The Slack bot for these settings; each collaborator may be injected instead (tests, bench)."""
        from adapters.slack.app import SlackBot, SlackOptions
        from adapters.slack.state import SlackState

        s = self.settings
        client = client or self.slack_client
        if not socket_mode and s.slack_signing_secret is None:
            raise ConfigError("Slack HTTP mode needs SLACK_SIGNING_SECRET")
        if directory is None and s.slack_usergroup_groups:
            from adapters.slack.directory import SlackUserGroups

            directory = SlackUserGroups(client, s.slack_usergroup_groups)
        options = options or SlackOptions()
        options = replace(options, socket_mode=socket_mode, admin_group=options.admin_group or s.slack_admin_group)
        return SlackBot(
            self.conversation(answers=answers, ingest_queue=ingest_queue),
            client,
            state or SlackState(_secret(s.redis_url)),
            signing_secret=_secret(s.slack_signing_secret),
            options=options,
            directory=directory,
            verified=self.verified,
        )

    @cached_property
    def teams_gateway(self) -> ChannelGateway:
        """The Bot Framework gateway (the one botbuilder import site), checked at start-up."""
        from adapters.teams.botframework import BotFrameworkConfig, BotFrameworkGateway

        s = self.settings
        password = _secret(s.microsoft_app_password) or ""
        # Checked here so a misconfigured bot fails at start-up, not with a 500 on each request.
        if s.microsoft_app_id and s.microsoft_app_type != "UserAssignedMSI" and not password:
            raise ConfigError("MicrosoftAppId is set but MicrosoftAppPassword is not")
        if s.microsoft_app_type in ("SingleTenant", "UserAssignedMSI") and s.microsoft_app_id and not s.microsoft_app_tenant_id:
            raise ConfigError(f"MicrosoftAppType={s.microsoft_app_type} needs MicrosoftAppTenantId")
        return BotFrameworkGateway(
            BotFrameworkConfig(
                app_id=s.microsoft_app_id,
                app_password=password,
                tenant_id=s.microsoft_app_tenant_id,
                app_type=s.microsoft_app_type,
            )
        )

    def teams_bot(
        self,
        gateway: ChannelGateway | None = None,
        *,
        answers: AnswerService | None = None,
        ingest_queue: IngestQueue | Callable[[], IngestQueue] | None = None,
        options: TeamsOptions | None = None,
        directory: Callable[[Incoming], frozenset[str]] | None = None,
    ) -> TeamsBot:
        """The Teams bot over ``gateway`` (default: :attr:`teams_gateway`)."""
        from adapters.teams.handler import TeamsBot

        if directory is None and self.settings.teams_aad_groups:
            from adapters.teams.directory import directory_for

            directory = directory_for(self.settings)
        return TeamsBot(
            self.conversation(answers=answers, ingest_queue=ingest_queue),
            gateway or self.teams_gateway,
            options=options,
            directory=directory,
            verified=self.verified,
        )

    def notifier(self, platform: Platform) -> Notifier | None:
        """Where the worker posts job progress for a platform; ``None`` when it is not configured."""
        from bot.types import Platform

        if platform == Platform.SLACK:
            if self.settings.slack_bot_token is None:
                return None
            from adapters.slack.notify import SlackNotifier

            return SlackNotifier(self.slack_client)
        if platform == Platform.TEAMS:
            from adapters.teams.notify import TeamsNotifier

            return TeamsNotifier(self.teams_gateway)
        return None

    @cached_property
    def job_reporter(self) -> JobReporter:
        """What the worker calls as a job advances or ends: notes in the chat it came from."""
        from bot.conversation import JobReporter

        return JobReporter(self.notifier, progress_every_s=self.settings.job_progress_every_s)

    # --- the web pages ---------------------------------------------------------------------------------
    @cached_property
    def review_store(self) -> SqlReviewStore:
        """Reviews of answers and the admin page's read-only queries."""
        from adapters.providers.review_store import SqlReviewStore

        return SqlReviewStore(self.database)

    @cached_property
    def catalog(self) -> KnowledgeCatalog:
        """What the bot knows, document by document (the admin page's Knowledge tab)."""
        from adapters.providers.catalog import KnowledgeCatalog

        return KnowledgeCatalog(self.database)

    @cached_property
    def session_revocations(self) -> SessionRevocations:
        """Signed-out admin sessions, in the database (shared by every web process)."""
        from adapters.web.auth import SessionRevocations

        return SessionRevocations(self.database)

    def web_auth(self) -> WebAuth:
        """A new admin sign-in for one web app (its own login throttle; the sign-outs are shared).
        ConfigError for a too short admin password."""
        from adapters.web.auth import WebAuth

        return WebAuth(self.settings, self.session_revocations)


def build(settings: Settings | None = None, /, **overrides: Any) -> Services:
    """Services for these settings; without them, the settings are read here, once, from the
    environment and .env (``overrides`` replace single settings, by field name)."""
    if settings is None:
        settings = Settings(**overrides)
    elif overrides:
        settings = settings.model_copy(update=overrides)
    return Services(settings)
