"""The one Settings class. Read once by the composition root and passed in; nothing else reads os.environ.

Every field is an environment variable with the ``SUPPORTBOT_`` prefix (or the usual
provider name where one exists, e.g. ``OPENAI_API_KEY``) and can also be set in ``.env``.
``.env.example`` documents them all.

The sources are read the way pydantic-settings reads them (this module did use it; its import
alone cost more than a third of a cold ``supportbot ask``'s own work, see docs/measurements.md):
keyword arguments, then the environment, then the ``.env`` file (``_env_file``; None: none),
then the defaults. Names match case-insensitively; a field with aliases is read from its
aliases (in order), any other from ``SUPPORTBOT_<NAME>``; dict settings are JSON; lists marked
``CommaList`` are split on commas. Parsing is strict: an unknown ``SUPPORTBOT_`` setting in
``.env`` (or any other unknown non-empty line there), a malformed value or a bad JSON value
stops the start with an error naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator


class NoDecode:
    """Marks a list setting whose raw text is split by a validator instead of decoded as JSON."""


CommaList = Annotated[list[str], NoDecode]
ENV_PREFIX = "SUPPORTBOT_"


class SettingsError(ValueError):
    """A setting's value could not be decoded (e.g. a dict setting that is not JSON)."""


def _alias(name: str, *plain: str) -> AliasChoices:
    return AliasChoices(f"{ENV_PREFIX}{name}", *plain)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True, populate_by_name=True)

    def __init__(self, _env_file: str | os.PathLike[str] | None = ".env", **values: Any) -> None:
        super().__init__(**_read_sources(type(self), values, _env_file))

    # --- storage -----------------------------------------------------------------------------
    data_dir: Path = Path("data")
    database_url: SecretStr | None = None  # default: sqlite:///<data_dir>/supportbot.db
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- ingest ------------------------------------------------------------------------------
    chunk_size: int = Field(default=80, ge=20, le=2000, description="words per chunk")
    chunk_overlap: int = Field(default=20, ge=0, le=500, description="words of overlap")
    max_file_mb: float = Field(default=50.0, gt=0)
    default_access: CommaList = ["public"]

    # --- embedder ----------------------------------------------------------------------------
    embedder: Literal["onnx", "openai", "cohere"] = "onnx"
    onnx_model_dir: Path | None = None  # model.onnx + tokenizer.json; default: bundled MiniLM int8
    onnx_pooling: Literal["mean", "cls"] = "mean"
    onnx_max_length: int = Field(default=128, ge=8, le=8192)
    onnx_threads: int = Field(default=0, ge=0)  # 0 = all cores
    # MatMuls in int8 (derived once from the model, cached in <data_dir>/models): ~2x faster
    onnx_int8: bool = True
    openai_embedding_model: str = "text-embedding-3-small"
    cohere_embed_model: str = "embed-english-v3.0"

    # --- index -------------------------------------------------------------------------------
    index: Literal["local", "pinecone"] = "local"
    pinecone_api_key: SecretStr | None = Field(default=None, validation_alias=_alias("PINECONE_API_KEY", "PINECONE_API_KEY"))
    pinecone_index: str = "supportbot"
    pinecone_host: str | None = None
    pinecone_namespace: str = "default"

    # --- reranker ----------------------------------------------------------------------------
    reranker: Literal["none", "cohere", "cross-encoder"] = "none"
    cross_encoder_dir: Path | None = None
    cohere_rerank_model: str = "rerank-v3.5"

    # --- retrieval ---------------------------------------------------------------------------
    top_k: int = Field(default=8, ge=1, le=50)
    candidates: int = Field(default=50, ge=5, le=500)
    feedback_ranking: bool = True  # votes on earlier answers nudge the ranking of similar questions

    # --- generator ---------------------------------------------------------------------------
    # "auto": an OpenAI(-compatible) LLM when OPENAI_API_KEY is set, else the offline extractive answerer.
    generator: Literal["auto", "extractive", "openai", "llama-cpp"] = "auto"
    openai_model: str = "gpt-4o-mini"
    gguf_path: Path | None = None
    provider_timeout_s: float = Field(default=20.0, gt=0)

    # --- provider credentials (the usual names are honoured) -----------------------------------
    openai_api_key: SecretStr | None = Field(default=None, validation_alias=_alias("OPENAI_API_KEY", "OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=_alias("OPENAI_BASE_URL", "OPENAI_BASE_URL"))
    cohere_api_key: SecretStr | None = Field(default=None, validation_alias=_alias("COHERE_API_KEY", "COHERE_API_KEY"))
    cohere_base_url: str | None = Field(default=None, validation_alias=_alias("COHERE_BASE_URL", "CO_API_URL"))

    # --- Slack -------------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias=_alias("SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=_alias("SLACK_SIGNING_SECRET", "SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(default=None, validation_alias=_alias("SLACK_APP_TOKEN", "SLACK_APP_TOKEN"))
    slack_api_url: str = "https://slack.com/api/"
    slack_mode: Literal["auto", "socket", "http"] = "auto"
    slack_admins: CommaList = []
    slack_admin_group: str | None = None

    # --- Microsoft Teams ---------------------------------------------------------------------
    microsoft_app_id: str = Field(default="", validation_alias=_alias("MICROSOFT_APP_ID", "MicrosoftAppId"))
    microsoft_app_password: SecretStr | None = Field(
        default=None, validation_alias=_alias("MICROSOFT_APP_PASSWORD", "MicrosoftAppPassword")
    )
    microsoft_app_tenant_id: str = Field(default="", validation_alias=_alias("MICROSOFT_APP_TENANT_ID", "MicrosoftAppTenantId"))
    microsoft_app_type: Literal["MultiTenant", "SingleTenant", "UserAssignedMSI"] = Field(
        default="MultiTenant", validation_alias=_alias("MICROSOFT_APP_TYPE", "MicrosoftAppType")
    )
    teams_admins: CommaList = []
    # Without MicrosoftAppId, /api/messages is not served at all. This opt-in serves it without
    # authentication for the Bot Framework Emulator: loopback bind only (serve refuses any other),
    # replies only to loopback serviceUrls, askers see public knowledge only and are never admins.
    teams_allow_unauthenticated: bool = False

    # --- workers -----------------------------------------------------------------------------
    redis_url: SecretStr | None = Field(default=None, validation_alias=_alias("REDIS_URL", "REDIS_URL"))
    fetch_allow_hosts: CommaList = []  # hosts exempt from the private-address rule (intranets, tests)
    fetch_max_mb: float = Field(default=20.0, gt=0)
    fetch_timeout_s: float = Field(default=20.0, gt=0)

    # --- connectors (credentials of the systems sources sync from; the rest is in the sources table)
    confluence_email: str | None = None
    confluence_api_token: SecretStr | None = None
    zendesk_email: str | None = None
    zendesk_api_token: SecretStr | None = None
    github_token: SecretStr | None = Field(default=None, validation_alias=_alias("GITHUB_TOKEN", "GITHUB_TOKEN"))
    notion_token: SecretStr | None = Field(default=None, validation_alias=_alias("NOTION_TOKEN", "NOTION_TOKEN"))
    # Worker tuning: a sync's hard time limit, the sync lock's expiry (renewed while the sync runs,
    # so a killed worker's lock frees itself quickly), and how long an unacknowledged task waits
    # before Redis hands it to another worker (must exceed the longest task).
    worker_queue: str = "supportbot"
    sync_time_limit_s: int = Field(default=3600, ge=10)
    ingest_time_limit_s: int = Field(default=600, ge=10)
    # How often the worker may post an ingest's progress in the chat it was requested from.
    job_progress_every_s: float = Field(default=30.0, ge=0)
    sync_lock_ttl_s: int = Field(default=60, ge=2)
    task_max_retries: int = Field(default=5, ge=0)
    retry_backoff_max_s: int = Field(default=600, ge=1)
    visibility_timeout_s: int | None = Field(default=None, ge=1)  # default: sync_time_limit_s + 5 minutes
    sync_check_interval_s: float = Field(default=60.0, gt=0)  # how often beat looks for due sources
    sync_batch_chunks: int = Field(default=64, ge=1)  # chunks embedded per batch (and so per checkpoint)

    # --- access ------------------------------------------------------------------------------
    # JSON objects: {"slack:C0123": ["staff"], "teams:*": []} and {"slack:U0123": ["staff", "hr"]}
    access_channel_groups: dict[str, list[str]] = {}
    access_user_groups: dict[str, list[str]] = {}

    # --- web ---------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    admin_password: SecretStr | None = None  # at least 12 characters (checked when the server starts)
    session_secret: SecretStr | None = None
    web_chat: Literal["on", "off", "login"] = "on"
    # The largest request body any endpoint accepts (Slack, Teams, web chat, admin); bigger
    # ones get 413 before they are read. Per-route exceptions: adapters/web/app.py.
    max_request_bytes: int = Field(default=1 << 20, ge=1024)
    # The address people reach this server at (e.g. https://bot.example.com), when it is behind
    # a proxy. Session cookies are Secure when it is https (or SUPPORTBOT_COOKIE_SECURE says so).
    public_url: str | None = None
    cookie_secure: bool | None = None  # default: on when public_url is https (else: when the request is)
    # /healthz and /metrics show counts and source names only to a signed-in admin or with
    # "Authorization: Bearer <this token>" (for Prometheus); anyone else gets the bare status.
    metrics_token: SecretStr | None = None

    # --- limits ------------------------------------------------------------------------------
    # Questions and ingests per user and per conversation (channel, chat, team channel) in a
    # fixed window; 0 turns a limit off. Counted in Redis when REDIS_URL is set (shared by every
    # process), else in this process.
    rate_questions_per_user: int = Field(default=20, ge=0)
    rate_questions_per_conversation: int = Field(default=60, ge=0)
    rate_questions_window_s: float = Field(default=60.0, gt=0)
    rate_ingests_per_user: int = Field(default=10, ge=0)
    rate_ingests_per_conversation: int = Field(default=30, ge=0)
    rate_ingests_window_s: float = Field(default=3600.0, gt=0)
    # Votes in the web chat, per visitor and per client address, in a fixed window.
    rate_votes_per_user: int = Field(default=30, ge=0)
    rate_votes_per_address: int = Field(default=100, ge=0)
    rate_votes_window_s: float = Field(default=3600.0, gt=0)
    # Provider calls on the question path: retried with backoff (ProviderUnavailable only) within
    # this many seconds in all, then the fallback (no reranker, the extractive generator).
    provider_retry_budget_s: float = Field(default=6.0, ge=0)
    # Directory groups, counted in private chats only (a DM, a personal chat):
    # {"S0123ABC": ["staff"]}: Slack user group id → access groups;
    # {"<aad group object id>": ["hr"]}: Azure AD group → access groups (membership from Microsoft
    # Graph checkMemberGroups with the bot's app credentials; needs GroupMember.Read.All).
    slack_usergroup_groups: dict[str, list[str]] = {}
    teams_aad_groups: dict[str, list[str]] = {}
    graph_url: str = "https://graph.microsoft.com/v1.0/"
    microsoft_login_url: str = "https://login.microsoftonline.com/"

    # --- verified answers (issue 17) ----------------------------------------------------------
    # Who may turn a reply in a thread into a verified answer, per conversation, as JSON:
    # {"slack:C0123": ["U0456"], "teams:19:abc@thread.tacv2": ["<aad object id>"], "slack:*": [...]}
    # (a Teams team id works as a key too). The Slack and Teams admins are experts everywhere.
    experts: dict[str, list[str]] = {}
    verified_review_days: int = Field(default=180, ge=0)  # review date after marking; 0 = never expires
    verified_min_similarity: float = Field(default=0.75, ge=0, le=1)  # question ~ verified question: goes first

    @field_validator("slack_admins", "teams_admins", "fetch_allow_hosts", "default_access", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def secure_cookies(self) -> bool | None:
        """Whether cookies must be Secure: the setting, else True for an https ``public_url``;
        None when neither says (then the request's own scheme decides)."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        if self.public_url:
            return self.public_url.lower().startswith("https://")
        return None

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'supportbot.db').resolve()}"


def _env_names(name: str, field: Any) -> list[str]:
    """The variable names a field is read from, lower-cased (names match case-insensitively)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [c.lower() for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias.lower()]
    return [f"{ENV_PREFIX}{name}".lower()]


def _is_json(field: Any) -> bool:
    """Dict and list settings are JSON, unless marked NoDecode (split by a validator)."""
    return get_origin(field.annotation) in (dict, list, set, tuple) and NoDecode not in field.metadata


def _read_env_file(path: str | os.PathLike[str] | None) -> dict[str, str | None]:
    if path is None:
        return {}
    file = Path(path).expanduser()
    if not (file.is_file() or file.is_fifo()):
        return {}
    from dotenv import dotenv_values  # only when there is a file to read

    return {k.lower(): v for k, v in dotenv_values(file, encoding="utf-8").items()}


def _read_sources(cls: type[BaseModel], given: dict[str, Any], env_file: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The values to validate: keyword arguments, else the environment, else ``env_file``."""
    environ = {k.lower(): v for k, v in os.environ.items()}
    dotenv = _read_env_file(env_file)
    data: dict[str, Any] = {}
    claimed: set[str] = set()
    rest = dict(given)
    by_lower: dict[str, list[str]] = {}
    for key in given:
        by_lower.setdefault(key.lower(), []).append(key)
    for name, field in cls.model_fields.items():
        names = _env_names(name, field)
        claimed.update(names)
        # A keyword argument by alias (case-insensitive) or by name; an alias wins over the name.
        aliases = [c.lower() for c in getattr(field.validation_alias, "choices", ()) if isinstance(c, str)]
        passed = list(dict.fromkeys(k for n in [*aliases, name.lower()] for k in by_lower.get(n, ()) if k in rest))
        if passed:
            data[name] = rest[passed[0]]
            for k in passed:
                rest.pop(k)
            continue
        for source, variables in (("EnvSettingsSource", environ), ("DotEnvSettingsSource", dotenv)):
            value = next((variables[n] for n in names if variables.get(n) is not None), None)
            if value is None:
                continue
            if _is_json(field):
                try:
                    value = json.loads(value)
                except ValueError as exc:
                    raise SettingsError(f'error parsing value for field "{name}" from source "{source}"') from exc
            data[name] = value
            break
    # Unknown keyword arguments, and unknown non-empty lines of the .env file, are refused
    # (extra="forbid"); a line named like a field without the prefix is ignored.
    data.update(rest)
    for key, value in dotenv.items():
        if value and key not in claimed and key not in data and key not in cls.model_fields:
            data[key] = value
    return data
