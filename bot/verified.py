"""Verified answers: an expert's reply in the thread, marked as the answer, becomes knowledge.

When the bot declines (or its answer gets a 👎), the people who know the answer are often in
the thread already. One of the conversation's experts (the ``experts`` setting, per channel or
team; the bot's admins always) marks a reply from an expert as the answer — a ✅ reaction or
the "Use as answer" message action in Slack, the card action in Teams — and this service:

1. checks it: the marker and the reply's author are experts here, and the thread's bot answer
   was a decline or got a 👎;
2. builds a **verified answer**: the question the bot could not answer, its paraphrases from
   the same knowledge gap (declined questions at least ``gap_similarity`` close to it), the
   expert's text with its formatting, the author, the time, a link to the thread and the
   access groups of the conversation the question was asked in (so a private channel's answer
   never reaches a public one: the index filters by them before ranking);
3. ingests it through the normal pipeline as its own source ``verified`` (the document's
   heading is the "Verified by @expert, date" badge every citation shows);
4. and returns the sentence to post in the thread.

Retrieval gives verified answers precedence through :class:`VerifiedRanker`: when a question
is at least ``min_similarity`` (cosine) close to a verified answer's question or one of its
paraphrases, that answer's passage is put first (found by a dense search restricted to the
source ``verified`` and the viewer's access groups); an expired or removed verified answer is
never returned. Every sentence the chat adapters show about verified answers is here.

Slack and Teams only parse the platform event into an :class:`ExpertReply`, call
:meth:`VerifiedService.mark`, and render the :class:`MarkResult`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import numpy as np

from bot.ports import (
    ChunkIndex,
    Embedder,
    Generation,
    GenerationRequest,
    Generator,
    Ingest,
    Vector,
    VerifiedStore,
)
from bot.similar import SimilarRecords
from bot.types import PUBLIC, Answer, Decision, Document, Platform, ScoredChunk, SearchFilters, Section

log = logging.getLogger(__name__)

SOURCE = "verified"
DOC_PREFIX = "verified:"
CHECK_REACTIONS = frozenset({"white_check_mark", "heavy_check_mark", "ballot_box_with_check"})

GAP_SIMILARITY = 0.8  # as the admin page groups declined questions into knowledge gaps
MAX_PARAPHRASES = 20
MAX_TEXT_CHARS = 20_000

# -- every sentence the adapters show ---------------------------------------------------------------
ANSWER_THIS_LABEL = "Answer this"
USE_AS_ANSWER_LABEL = "Use as answer"
NOT_EXPERT_TEXT = (
    "Only this channel's experts (and the bot's admins) can turn a reply into a verified answer. "
    "An admin can add you to the expert list (SUPPORTBOT_EXPERTS)."
)
AUTHOR_NOT_EXPERT_TEXT = (
    "Only a reply written by one of this channel's experts can become a verified answer."
)
NOT_NEEDED_TEXT = (
    "That thread has no declined or 👎-rated answer from me, so there is nothing to answer there."
)
EMPTY_TEXT = "That reply has no text I could use as an answer."
UNVERIFIED_IDENTITY_TEXT = (
    "Verified answers can't be saved here: this bot runs without authentication (local testing "
    "mode), so it cannot tell who you are."
)
FAILED_TEXT = "Sorry, I couldn't save that answer. Please try again in a minute."


def answer_this_text(platform: Platform) -> str:
    """What an expert is told after pressing "Answer this"."""
    if platform == Platform.SLACK:
        return (
            "Reply in this thread with the answer, then react to your reply with :white_check_mark: "
            f"(or use the “{USE_AS_ANSWER_LABEL}” message action on it). "
            "It becomes a verified answer the bot cites for this question from now on."
        )
    return (
        "Type the answer below and choose “Use as answer”. "
        "It becomes a verified answer the bot cites for this question from now on."
    )


def answer_this_prompt(platform: Platform) -> str:
    """The line under a decline (or a 👎) inviting the channel's experts to answer."""
    if platform == Platform.SLACK:
        return "Know the answer? An expert can reply in the thread and mark the reply with :white_check_mark:."
    return "Know the answer? An expert can answer it here and it becomes a verified answer."


def badge(author_name: str, when: datetime) -> str:
    """The badge a verified answer's citations carry: ``Verified by @alice, 2026-12-07``."""
    name = author_name.lstrip("@") or "an expert"
    return f"Verified by @{name}, {when.date().isoformat()}"


def saved_text(v: VerifiedAnswer, *, updated: bool = False) -> str:
    """Told in the thread once the answer is in the knowledge base."""
    name = v.author_name.lstrip("@") or "The expert"
    verb = "was updated" if updated else "is now"
    return (
        f"@{name}'s answer {verb} in the knowledge base. "
        "The next person who asks this (or something like it) gets it, marked as verified."
    )


# -- values ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedAnswer:
    """One expert answer kept as knowledge (see the module docstring).

    ``id`` is derived from where the reply was written, so marking the same reply twice updates
    it. ``review_by``: after this time the answer is expired and never cited (``None``: never).
    ``uses`` is filled in by stores that count the answers citing it.
    """

    id: str
    question: str
    text: str
    author: str
    author_name: str
    platform: Platform
    conversation: str
    thread: str
    message_id: str
    url: str
    groups: frozenset[str]
    created_at: datetime
    paraphrases: tuple[str, ...] = ()
    answer_id: str = ""
    marked_by: str = ""
    review_by: datetime | None = None
    removed: bool = False
    updated_at: datetime | None = None
    uses: int = 0

    @property
    def doc_id(self) -> str:
        return DOC_PREFIX + self.id

    @property
    def phrasings(self) -> tuple[str, ...]:
        return (self.question, *self.paraphrases)

    def active(self, now: datetime) -> bool:
        """Not removed and not past its review date."""
        if self.removed:
            return False
        return self.review_by is None or _aware(self.review_by) > now

    @property
    def access(self) -> tuple[str, ...]:
        """Who may see it: the conversation's groups beyond ``public`` (every viewer has ``public``,
        so an answer from a channel with more access is only visible where that access is);
        ``public`` when the conversation had no more."""
        extra = sorted(self.groups - {PUBLIC})
        return tuple(extra) if extra else (PUBLIC,)

    def document(self) -> Document:
        """The document ingested for it: title = the question, heading = the badge, text = the answer."""
        stamp = self.updated_at or self.created_at
        title = _one_line(self.question)[:300]
        heading = badge(self.author_name, stamp)
        text = self.text.strip()
        digest = hashlib.sha256(
            "\x1f".join([title, heading, text, self.url, ",".join(sorted(self.groups))]).encode()
        ).hexdigest()
        return Document(
            id=self.doc_id,
            source=SOURCE,
            title=title,
            sections=(Section((heading,), text),),
            url=self.url,
            content_hash=digest,
            updated_at=stamp,
            access=self.access,
        )


@dataclass(frozen=True)
class ExpertReply:
    """A chat message someone wants to mark as the answer, as the adapter parsed it.

    ``text`` is the reply in the small Markdown subset answers use (the adapter converts the
    platform's formatting). ``scopes`` are extra expert-list keys the conversation belongs to
    (a Teams team id). ``answer_id``: the bot answer it answers, when the platform says so (a
    card action on it); otherwise the thread's answers are looked up.
    """

    platform: Platform
    conversation: str
    thread: str
    message_id: str
    author: str
    author_name: str
    text: str
    url: str = ""
    scopes: tuple[str, ...] = ()
    answer_id: str = ""


@dataclass(frozen=True)
class MarkResult:
    """The outcome of marking a reply. ``text`` is for the thread when ``ok``, else for the marker only."""

    ok: bool
    text: str
    verified: VerifiedAnswer | None = None


@dataclass(frozen=True)
class ThreadAnswer:
    """A bot answer given in a thread, with its 👎 count."""

    answer: Answer
    down_votes: int = 0

    @property
    def needs_answer(self) -> bool:
        return self.answer.decision == Decision.DECLINED or self.down_votes > 0


@dataclass(frozen=True)
class Experts:
    """Who may turn replies into verified answers.

    ``lists`` maps ``platform:conversation`` (a Slack channel id, a Teams channel or team id;
    ``platform:*`` for every one) to user ids (Slack user ids, Teams AAD object ids), like the
    access settings. ``admins`` maps a platform to its admin user ids: admins are experts everywhere.
    """

    lists: Mapping[str, frozenset[str]] = field(default_factory=dict)
    admins: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def is_expert(
        self, platform: Platform | str, conversations: Sequence[str], user: str, *, admin: bool = False
    ) -> bool:
        """Whether ``user`` is an expert in any of ``conversations`` (or an admin)."""
        p = Platform(platform).value
        if not user:
            return False
        if admin or user.lower() in {a.lower() for a in self.admins.get(p, frozenset())}:
            return True
        keys = [f"{p}:{c}" for c in conversations if c] + [f"{p}:*"]
        return any(user in self.lists.get(k, frozenset()) for k in keys)


def conversation_keys(platform: Platform | str, conversation: str, scopes: Sequence[str] = ()) -> list[str]:
    """The expert-list keys a conversation answers to: itself, its channel (a Teams thread's
    conversation id without ``;messageid=``) and its scopes (the team)."""
    base = conversation.split(";messageid=", 1)[0]
    return list(dict.fromkeys([conversation, base, *scopes]))


# -- the service -------------------------------------------------------------------------------------
class VerifiedService:
    """Marks replies as verified answers, keeps them, and serves the admin page and the export."""

    def __init__(
        self,
        store: VerifiedStore,
        ingestor: Ingest,
        embedder: Embedder,
        experts: Experts,
        *,
        review_days: int = 180,
        gap_similarity: float = GAP_SIMILARITY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.ingestor = ingestor
        self.embedder = embedder
        self.experts = experts
        self.review_days = review_days
        self.gap_similarity = gap_similarity
        self.clock = clock
        self.on_change = on_change  # e.g. the ranker's refresh

    # -- who ---------------------------------------------------------------------------------------
    def is_expert(
        self, platform: Platform | str, conversation: str, user: str, *, scopes: Sequence[str] = (),
        admin: bool = False,
    ) -> bool:
        return self.experts.is_expert(platform, conversation_keys(platform, conversation, scopes), user, admin=admin)

    @staticmethod
    def offers_answer_this(answer: Answer, *, private_chat: bool = False) -> bool:
        """Whether a reply carrying ``answer`` offers "Answer this": a decline where colleagues read
        along (not a private chat with the bot); a 👎 offers it later."""
        return (
            not private_chat
            and answer.decision == Decision.DECLINED
            and answer.question.platform in (Platform.SLACK, Platform.TEAMS)
        )

    def answer_this(
        self, platform: Platform, conversation: str, user: str, *, scopes: Sequence[str] = (), admin: bool = False
    ) -> str:
        """What to tell whoever pressed "Answer this"."""
        if not self.is_expert(platform, conversation, user, scopes=scopes, admin=admin):
            return NOT_EXPERT_TEXT
        return answer_this_text(platform)

    def awaits_answer(self, platform: Platform, conversation: str, thread: str) -> bool:
        """Whether the thread's newest bot answer was declined or got a 👎 (an expert's reply there
        is an answer, not a question for the bot)."""
        found = self.store.thread_answers(platform.value, conversation, thread)
        return bool(found) and found[0].needs_answer

    # -- marking -----------------------------------------------------------------------------------
    def mark(self, reply: ExpertReply, marker: str, *, marker_is_admin: bool = False) -> MarkResult:
        """Turn ``reply`` into a verified answer if ``marker`` may and the thread needs one."""
        p = reply.platform
        if not self.is_expert(p, reply.conversation, marker, scopes=reply.scopes, admin=marker_is_admin):
            return MarkResult(False, NOT_EXPERT_TEXT)
        if reply.author != marker and not self.is_expert(p, reply.conversation, reply.author, scopes=reply.scopes):
            return MarkResult(False, AUTHOR_NOT_EXPERT_TEXT)
        text = reply.text.strip()[:MAX_TEXT_CHARS]
        if not text:
            return MarkResult(False, EMPTY_TEXT)
        target = self._answer_to(reply)
        if target is None:
            return MarkResult(False, NOT_NEEDED_TEXT)
        now = self.clock()
        vid = _verified_id(p.value, reply.conversation, reply.message_id or uuid.uuid4().hex)
        earlier = self.store.get(vid)
        question = target.answer.question
        verified = VerifiedAnswer(
            id=vid,
            question=_one_line(question.text),
            paraphrases=self.paraphrases(question.text),
            text=text,
            author=reply.author,
            author_name=reply.author_name or reply.author,
            platform=p,
            conversation=reply.conversation,
            thread=reply.thread,
            message_id=reply.message_id,
            url=reply.url,
            # The access groups the question was asked with: exactly what that conversation may see.
            groups=frozenset(question.groups) or frozenset({PUBLIC}),
            created_at=earlier.created_at if earlier else now,
            updated_at=now if earlier else None,
            answer_id=target.answer.id,
            marked_by=marker,
            review_by=now + timedelta(days=self.review_days) if self.review_days > 0 else None,
        )
        self._publish(verified)
        return MarkResult(True, saved_text(verified, updated=earlier is not None), verified)

    def _answer_to(self, reply: ExpertReply) -> ThreadAnswer | None:
        """The bot answer in the reply's thread that needs an answer (newest first)."""
        if reply.answer_id:
            # A card action names its answer: it must have been given in this conversation.
            named = self.store.answer_with_votes(reply.answer_id)
            if named is None or named.answer.question.platform != reply.platform:
                return None
            here = conversation_keys(reply.platform, reply.conversation)[-1]
            there = conversation_keys(reply.platform, named.answer.question.conversation)[-1]
            return named if here == there and named.needs_answer else None
        found = self.store.thread_answers(reply.platform.value, reply.conversation, reply.thread)
        return next((t for t in found if t.needs_answer), None)

    def paraphrases(self, question: str, limit: int = 500) -> tuple[str, ...]:
        """Declined questions from the same knowledge gap (cosine >= ``gap_similarity``), newest first."""
        rows = [q for _, q, _ in self.store.declined_questions(limit)]
        own = _norm(question)
        texts = list(dict.fromkeys(q.strip() for q in rows if q.strip() and _norm(q) != own))
        if not texts:
            return ()
        vectors = self.embedder.embed_documents([question, *texts])
        sims = vectors[1:] @ vectors[0]
        close = [t for t, s in zip(texts, sims, strict=True) if float(s) >= self.gap_similarity]
        return tuple(close[:MAX_PARAPHRASES])

    def _publish(self, verified: VerifiedAnswer) -> None:
        """Ingest (or re-ingest) the document, then save the record."""
        self.ingestor.ingest([verified.document()], source=SOURCE)
        self.store.save(verified)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- admin ---------------------------------------------------------------------------------------
    def records(self, include_removed: bool = False) -> list[VerifiedAnswer]:
        """Every verified answer, newest first, with how often each was cited."""
        return self.store.records(include_removed)

    def edit(
        self, verified_id: str, *, text: str | None = None, question: str | None = None,
        review_by: datetime | None | str = "keep",
    ) -> VerifiedAnswer | None:
        """Change the text, the question or the review date (``None``: never expires); re-ingests."""
        current = self.store.get(verified_id)
        if current is None or current.removed:
            return None
        changed = replace(
            current,
            text=current.text if text is None else text.strip()[:MAX_TEXT_CHARS],
            question=current.question if question is None else _one_line(question),
            review_by=current.review_by if isinstance(review_by, str) else review_by,
            updated_at=self.clock(),
        )
        if not changed.text or not changed.question:
            raise ValueError("a verified answer needs a question and a text")
        if changed.active(self.clock()):
            self._publish(changed)
        else:
            self._unpublish(changed)
        return changed

    def expire(self, verified_id: str, when: datetime | None = None) -> VerifiedAnswer | None:
        """Set the review date to ``when`` (default now): from then on it is not cited."""
        return self.edit(verified_id, review_by=when or self.clock())

    def remove(self, verified_id: str) -> bool:
        """Take it out of the index and mark it removed (kept for the record)."""
        current = self.store.get(verified_id)
        if current is None or current.removed:
            return False
        self._unpublish(replace(current, removed=True, updated_at=self.clock()))
        return True

    def _unpublish(self, verified: VerifiedAnswer) -> None:
        run_id = uuid.uuid4().hex
        self.ingestor.remove(verified.doc_id, SOURCE, run_id)
        self.store.save(verified)
        self._changed()


# -- ranking ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedRankConfig:
    """``min_similarity``: how close (cosine) a question must be to a verified answer's question
    or one of its paraphrases for that answer to go first. ``margin``: how far above the best
    ordinary passage it is put (fused score scale). ``accept_similarity``: a verified passage
    that retrieval ranks first on its own is taken as the answer (``scores["verified"]``) when
    the question is at least this close to one of its phrasings — nothing is reordered for it.
    Between ``accept_similarity`` and ``min_similarity`` an answer also goes first when its
    phrasing is closer to the question than every ordinary passage found (dense cosine)."""

    enabled: bool = True
    min_similarity: float = 0.75
    accept_similarity: float = 0.55
    margin: float = 0.2
    refresh_s: float = 5.0


class VerifiedRanker:
    """Puts matching verified answers first and keeps inactive ones out (see the module docstring)."""

    def __init__(
        self,
        answers: Callable[[], Sequence[VerifiedAnswer]],
        embedder: Embedder,
        index: ChunkIndex,
        config: VerifiedRankConfig | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._index = index
        self.config = config or VerifiedRankConfig()
        self._clock = clock

        self._answers: SimilarRecords[VerifiedAnswer] = SimilarRecords(
            answers, lambda r: r.phrasings, embedder, refresh_s=self.config.refresh_s, what="verified answers",
            keep=lambda r: r.active(self._clock()),
        )

    def refresh(self, force: bool = False) -> None:
        """Reload the verified answers (at most every ``refresh_s`` seconds unless forced)."""
        self._answers.refresh(force)

    def _active(self) -> dict[str, VerifiedAnswer]:
        return {r.doc_id: r for r in self._answers.snapshot.records}

    def text_of(self, doc_id: str) -> str | None:
        """The whole text of an active verified answer (its passages may be parts of it)."""
        found = self._active().get(doc_id)
        return None if found is None else found.text

    def matches(self, query_vector: Vector, floor: float | None = None) -> dict[str, float]:
        """Verified doc id -> its best phrasing's cosine to the query, for those reaching ``floor``
        (default ``min_similarity``)."""
        snapshot = self._answers.snapshot
        if not snapshot.owners:
            return {}
        sims = snapshot.similarities(query_vector)
        best: dict[str, float] = {}
        for i in np.flatnonzero(sims >= (self.config.min_similarity if floor is None else floor)):
            doc_id = snapshot.records[snapshot.owners[int(i)]].doc_id
            best[doc_id] = max(best.get(doc_id, -1.0), float(sims[i]))
        return best

    def adjust(self, query_vector: Vector, hits: Sequence[ScoredChunk], filters: SearchFilters) -> list[ScoredChunk]:
        """``hits`` without inactive verified passages, matching verified passages first."""
        if not self.config.enabled:
            return list(hits)
        self.refresh()
        active = self._active()
        kept = [h for h in hits if h.chunk.source != SOURCE or h.chunk.doc_id in active]
        c = self.config
        close = self.matches(query_vector, min(c.min_similarity, c.accept_similarity))
        # Also first: an answer whose question is closer to this one than any ordinary passage is
        # (both cosines of the same query vector) — an expert answered this question, the passages
        # are only near it.
        nearest = max((h.scores.get("dense", 0.0) for h in kept if h.chunk.source != SOURCE), default=0.0)
        matched = {
            d: s for d, s in close.items() if s >= c.min_similarity or (s >= c.accept_similarity and s >= nearest)
        }
        if not matched:
            return self._accept_first(kept, close)
        # Only passages the viewer may see: the index applies the viewer's access groups.
        restricted = replace(filters, sources=frozenset({SOURCE}))
        found = [
            h for h in self._index.dense_search(query_vector, max(3, len(matched) * 2), restricted)
            if h.chunk.doc_id in matched
        ]
        if not found:
            return self._accept_first(kept, close)
        top = max((h.score for h in kept), default=0.0)
        promoted: list[ScoredChunk] = []
        seen: set[str] = set()
        for h in sorted(found, key=lambda h: -matched[h.chunk.doc_id]):
            if h.chunk.id in seen:
                continue
            seen.add(h.chunk.id)
            sim = matched[h.chunk.doc_id]
            score = top + self.config.margin + sim
            scores = {**h.scores, "verified": sim, "fused": score}
            promoted.append(ScoredChunk(h.chunk, score, MappingProxyType(scores)))
        rest = [h for h in kept if h.chunk.id not in seen]
        return promoted + rest

    def _accept_first(self, hits: list[ScoredChunk], close: Mapping[str, float]) -> list[ScoredChunk]:
        """Mark the first passage as the verified answer when retrieval ranked it first on its own
        and the question is ``accept_similarity`` close to one of its phrasings."""
        if not hits or hits[0].chunk.source != SOURCE:
            return hits
        sim = close.get(hits[0].chunk.doc_id)
        if sim is None or sim < self.config.accept_similarity:
            return hits
        first = hits[0]
        return [ScoredChunk(first.chunk, first.score, MappingProxyType({**first.scores, "verified": sim})), *hits[1:]]


class VerifiedFirst:
    """A Generator that answers with the expert's own words when the best passage is a matching
    verified answer (``scores["verified"]``, set by :class:`VerifiedRanker`), cited [1]; anything
    else goes to the wrapped generator. An expert's reply says what it says: an extractive
    quote would only drop the sentences that do not repeat the question's words."""

    def __init__(self, inner: Generator, ranker: VerifiedRanker) -> None:
        self.inner = inner
        self.ranker = ranker
        self.name = inner.name

    def _verified_text(self, request: GenerationRequest) -> str | None:
        if not request.passages or "verified" not in request.passages[0].scores:
            return None
        top = request.passages[0].chunk
        text = self.ranker.text_of(top.doc_id) or top.text
        return f"{text.strip()} [1]"

    def generate(self, request: GenerationRequest) -> Generation:
        text = self._verified_text(request)
        if text is None:
            return self.inner.generate(request)
        return Generation(text, model=self.inner.name)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        text = self._verified_text(request)
        if text is None:
            yield from self.inner.stream(request)
        else:
            yield text


# -- fine-tuning export ----------------------------------------------------------------------------
FINETUNE_SYSTEM = (
    "You are a support assistant. Answer from the company's knowledge; cite the sources you use as [n]. "
    "If the sources do not answer the question, say so."
)


@dataclass(frozen=True)
class RatedExample:
    """A 👍-rated answer: the question, the passages it cited (title, text) and the answer text."""

    question: str
    passages: tuple[tuple[str, str], ...]
    answer: str
    groups: frozenset[str]


def _user_turn(question: str, passages: Sequence[tuple[str, str]]) -> str:
    if not passages:
        return question
    sources = "\n\n".join(f"[{i}] {title}\n{text}" for i, (title, text) in enumerate(passages, 1))
    return f"Sources:\n{sources}\n\nQuestion: {question}"


def finetune_examples(
    verified: Iterable[VerifiedAnswer],
    rated: Iterable[RatedExample],
    groups: frozenset[str],
    now: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """OpenAI chat fine-tuning records (``{"messages": [...]}``): every phrasing of each active
    verified answer, and each 👍-rated answer, whose access groups are all within ``groups``
    (so an export for a public model holds nothing from a private channel)."""
    now = now or datetime.now(UTC)
    for v in verified:
        if not v.active(now) or not v.groups <= groups:
            continue
        passage = ((f"{v.question} ({badge(v.author_name, v.updated_at or v.created_at)})", v.text),)
        for phrasing in v.phrasings:
            yield _record(_user_turn(phrasing, passage), v.text + " [1]")
    for r in rated:
        if not r.groups <= groups:
            continue
        yield _record(_user_turn(r.question, r.passages), r.answer)


def _record(user: str, assistant: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": FINETUNE_SYSTEM},
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ]
    }


# -- helpers -------------------------------------------------------------------------------------
def _verified_id(platform: str, conversation: str, message_id: str) -> str:
    return hashlib.sha256(f"{platform}\x1f{conversation}\x1f{message_id}".encode()).hexdigest()[:24]


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _norm(text: str) -> str:
    return _one_line(text).lower().rstrip("?.! ")


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)
