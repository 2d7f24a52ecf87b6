"""Typed, frozen values that cross module boundaries."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

PUBLIC = "public"
"""The access group every viewer has."""


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path, as a loader found it.

    ``text`` holds paragraphs separated by blank lines.
    """

    heading_path: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Document:
    """One loaded document, before chunking."""

    id: str
    source: str
    title: str
    sections: tuple[Section, ...]
    url: str
    content_hash: str
    updated_at: datetime | None = None
    access: tuple[str, ...] = (PUBLIC,)


@dataclass(frozen=True)
class Chunk:
    """One passage of a document, the unit that is embedded, indexed and cited."""

    id: str
    doc_id: str
    ordinal: int
    text: str
    title: str
    heading_path: tuple[str, ...]
    url: str
    source: str
    content_hash: str
    updated_at: datetime | None = None
    access: tuple[str, ...] = (PUBLIC,)
    # The document's SimHash (bot/fingerprint.py): near-identical documents are cited once.
    fingerprint: str = ""

    @property
    def heading(self) -> str:
        """The heading path joined for display, e.g. ``Billing > Refunds``."""
        return " > ".join(self.heading_path)

    @property
    def context(self) -> str:
        """Title and heading path: the context prepended for embedding and keyword search."""
        parts = [self.title] + [h for h in self.heading_path if h and h != self.title]
        return " > ".join(p for p in parts if p)


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk with its final score and the per-stage scores that led to it."""

    chunk: Chunk
    score: float
    scores: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class SearchFilters:
    """Restrictions applied inside the index, before ranking.

    ``groups`` is the viewer's access groups: a chunk is visible when it shares one
    of them. ``None`` means unrestricted and is only used by operators (CLI, eval).
    ``platform`` is where the viewer asks; it filters nothing in the index, it tells the
    feedback ranking which votes count (anonymous web votes only count on the web).
    """

    groups: frozenset[str] | None = frozenset({PUBLIC})
    sources: frozenset[str] | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    platform: str | None = None

    def allows(self, chunk: Chunk) -> bool:
        """Whether ``chunk`` passes these filters (the reference semantics for every index)."""
        if self.groups is not None and not self.groups.intersection(chunk.access):
            return False
        if self.sources is not None and chunk.source not in self.sources:
            return False
        if self.updated_after is not None and (
            chunk.updated_at is None or chunk.updated_at < self.updated_after
        ):
            return False
        return not (
            self.updated_before is not None
            and (chunk.updated_at is None or chunk.updated_at > self.updated_before)
        )


UNRESTRICTED = SearchFilters(groups=None)


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did, document by document."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # (path, reason): could not be read or parsed
    chunks_embedded: int = 0
    # (what was there, what replaced it): a document overwritten by one from another place
    replaced: tuple[tuple[str, str], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason): unsupported, excluded or empty

    def summary(self) -> str:
        text = (
            f"added {len(self.added)}, changed {len(self.changed)}, unchanged {len(self.unchanged)}, "
            f"removed {len(self.removed)}, skipped {len(self.skipped)}, failed {len(self.failed)}"
        )
        return text + replaced_summary(self.replaced)


def replaced_summary(replaced: Sequence[tuple[str, str]], show: int = 5) -> str:
    """``"; replaced N: OLD by NEW, ..."`` (the first ``show`` of them), or "" when there are none."""
    if not replaced:
        return ""
    shown = ", ".join(f"{old} by {new}" for old, new in replaced[:show])
    more = f" and {len(replaced) - show} more" if len(replaced) > show else ""
    return f"; replaced {len(replaced)}: {shown}{more}"


class Platform(enum.StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    WEB = "web"
    CLI = "cli"


@dataclass(frozen=True)
class Turn:
    """One earlier turn of a conversation."""

    speaker: str  # "user" | "assistant"
    text: str


@dataclass(frozen=True)
class Question:
    """A question as the core sees it, whichever chat it came from."""

    text: str
    asker: str = "anonymous"
    platform: Platform = Platform.CLI
    conversation: str = ""
    thread: str = ""
    history: tuple[Turn, ...] = ()
    groups: frozenset[str] = frozenset({PUBLIC})


class Decision(enum.StrEnum):
    ANSWERED = "answered"
    DECLINED = "declined"


@dataclass(frozen=True)
class Citation:
    """Citation ``number`` (1-based, as shown as [n]) points at one passage."""

    number: int
    chunk_id: str
    doc_id: str
    title: str
    heading_path: tuple[str, ...]
    url: str
    updated_at: datetime | None
    snippet: str = ""


@dataclass(frozen=True)
class TracePassage:
    chunk_id: str
    doc_id: str
    title: str
    scores: Mapping[str, float]
    access: tuple[str, ...] = (PUBLIC,)


@dataclass(frozen=True)
class Trace:
    """How an answer came about: enough to explain and to replay it."""

    query: str
    retrieved: tuple[TracePassage, ...] = ()
    reranked: tuple[TracePassage, ...] = ()
    embedder: str = ""
    reranker: str = ""
    generator: str = ""
    prompt_version: str = ""
    timings_ms: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Answer:
    """The reply to a Question: platform-neutral text (a small Markdown subset) and structured citations.

    ``text`` refers to citations as ``[n]``. For a declined answer, ``citations`` holds the
    closest sources (if relevant enough) and ``text`` says the knowledge base does not cover it.
    """

    id: str
    question: Question
    text: str
    decision: Decision
    confidence: float
    citations: tuple[Citation, ...] = ()
    trace: Trace | None = None
    created_at: datetime | None = None
    note: str = ""  # e.g. "answered by the extractive fallback: OpenAI was unavailable"
    # Other relevant sources, not quoted: shown under "See also" (title + link), never as [n].
    see_also: tuple[Citation, ...] = ()


class Vote(enum.StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class Feedback:
    """One user's vote on one answer (a later vote by the same user replaces it)."""

    answer_id: str
    user: str
    platform: Platform
    vote: Vote
    comment: str = ""
    created_at: datetime | None = None


def chunk_to_dict(chunk: Chunk) -> dict[str, object]:
    """A JSON-safe dict of a chunk (for stores and traces)."""
    return {
        "id": chunk.id,
        "doc_id": chunk.doc_id,
        "ordinal": chunk.ordinal,
        "text": chunk.text,
        "title": chunk.title,
        "heading_path": list(chunk.heading_path),
        "url": chunk.url,
        "source": chunk.source,
        "content_hash": chunk.content_hash,
        "updated_at": None if chunk.updated_at is None else chunk.updated_at.isoformat(),
        "access": list(chunk.access),
        "fingerprint": chunk.fingerprint,
    }


def chunk_from_dict(data: Mapping[str, object]) -> Chunk:
    """The inverse of chunk_to_dict."""
    updated = data.get("updated_at")
    return Chunk(
        id=str(data["id"]),
        doc_id=str(data["doc_id"]),
        ordinal=int(str(data["ordinal"])),
        text=str(data["text"]),
        title=str(data["title"]),
        heading_path=tuple(str(h) for h in data.get("heading_path") or ()),  # type: ignore[attr-defined]
        url=str(data["url"]),
        source=str(data["source"]),
        content_hash=str(data["content_hash"]),
        updated_at=None if not updated else datetime.fromisoformat(str(updated)),
        access=tuple(str(a) for a in data.get("access") or ()),  # type: ignore[attr-defined]
        fingerprint=str(data.get("fingerprint") or ""),
    )


@dataclass(frozen=True)
class ChatAddress:
    """Where in a chat to tell someone how their background job went; stored with the job.

    Slack: ``conversation`` is the channel the request came from (a ``D…`` id for a direct
    message) and ``user`` the requester. Teams: ``conversation`` the conversation id, ``thread``
    the id of the message to reply under, ``service_url``, ``bot`` and ``tenant`` the parts of a
    conversation reference a proactive message needs. Only plain strings, so the job record
    (a Redis hash, shown on the web page) can carry it; no capability (a Slack response_url) is kept.
    """

    platform: Platform
    conversation: str
    user: str = ""
    thread: str = ""
    team: str = ""
    service_url: str = ""
    bot: str = ""
    tenant: str = ""
    channel: str = ""  # the Bot Framework channel id ("msteams", "emulator")

    def to_notify(self) -> dict[str, str]:
        """The ``notify`` mapping ``IngestQueue.enqueue_ingest`` stores with the job."""
        return {k: v for k, v in {
            "platform": self.platform.value, "conversation": self.conversation, "user": self.user,
            "thread": self.thread, "team": self.team, "service_url": self.service_url, "bot": self.bot,
            "tenant": self.tenant, "channel": self.channel,
        }.items() if v}

    @classmethod
    def from_notify(cls, notify: Mapping[str, str]) -> ChatAddress | None:
        """The address stored with a job; ``None`` when the job has none (CLI, web, schedule)."""
        try:
            platform = Platform(str(notify.get("platform", "")))
        except ValueError:
            return None
        conversation = str(notify.get("conversation") or "")
        if platform not in (Platform.SLACK, Platform.TEAMS) or not conversation:
            return None
        return cls(platform, conversation, **{
            k: str(notify.get(k) or "") for k in ("user", "thread", "team", "service_url", "bot", "tenant", "channel")
        })
