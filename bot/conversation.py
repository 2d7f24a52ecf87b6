"""The conversation, once for Slack and Teams: what both platforms share.

The chat adapters parse an inbound event into a :class:`ChatMessage`, call
:class:`Conversation`, and render what it returns; they decide nothing themselves. Here
live: throttling (``bot.ratelimit.Throttle``), access groups with the directory-group
fallback, the admin check (``AccessDenied``), asking and the streaming cadence, votes (one
set of rules), ``/ingest`` requests, and the job progress the worker reports
(:class:`JobReporter`, through the ``Notifier`` port). Every sentence comes from
``bot.messages``.

Rules where Slack and Teams used to differ, now one:

* a vote is recorded only on an answer that exists (unless the store is down: then it is
  spooled), with its ``created_at``; a store that refuses it gives ``VoteOutcome.FAILED``
  instead of an exception;
* admins are compared case-insensitively, and never for an unauthenticated message;
* an ingest request is checked in this order: a valid target, an admin, a queue, the limit;
* ingest progress is reported by the worker: at most every ``progress_every_s`` (30 s) in one
  message updated in place, and the result as a new message; nothing polls in the web process;
* at most :data:`HISTORY_TURNS` earlier turns go with a question.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bot import messages
from bot.access import AccessResolver
from bot.answering import AnswerService
from bot.errors import AccessDenied, ProviderUnavailable, RateLimited, SupportbotError
from bot.ports import IngestQueue, JobStatus, Notifier
from bot.ratelimit import Throttle
from bot.types import Answer, ChatAddress, Feedback, Platform, Question, Turn, Vote

log = logging.getLogger(__name__)

HISTORY_TURNS = 10
FIRST_UPDATE_AFTER_S = 0.8  # answers ready sooner go out once, complete
UPDATE_INTERVAL_S = 1.0  # both platforms throttle edits to about one a second
PROGRESS_EVERY_S = 30.0

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class ChatMessage:
    """One message addressed to the bot, as the adapter parsed it.

    ``conversation`` is where the reply goes (Teams: with its ``;messageid=`` thread suffix);
    ``access_conversations`` the ids whose configured groups apply (default: ``conversation``;
    Teams: the channel and its team). ``private``: nobody but the asker reads the reply (a DM,
    a personal chat). ``verified``: the platform authenticated the ids (Teams' local testing
    mode does not, so its asker gets public knowledge only and is never an admin).
    """

    platform: Platform
    asker: str
    conversation: str
    text: str
    private: bool
    thread: str = ""
    history: tuple[Turn, ...] = ()
    access_conversations: tuple[str, ...] = ()
    verified: bool = True


class VoteOutcome(enum.Enum):
    RECORDED = "recorded"
    UNKNOWN_ANSWER = "unknown answer"
    FAILED = "failed"


@dataclass(frozen=True)
class VoteResult:
    """What became of a vote; ``text`` is what to tell the voter."""

    outcome: VoteOutcome
    vote: Vote
    answer: Answer | None = None

    @property
    def recorded(self) -> bool:
        return self.outcome == VoteOutcome.RECORDED

    @property
    def text(self) -> str:
        if self.outcome == VoteOutcome.RECORDED:
            return messages.thanks(self.vote)
        if self.outcome == VoteOutcome.UNKNOWN_ANSWER:
            return messages.VOTE_UNKNOWN_ANSWER
        return messages.VOTE_FAILED


@dataclass(frozen=True)
class IngestReply:
    """The outcome of an ingest request: ``job_id`` when queued; ``text`` to tell the asker."""

    text: str
    job_id: str = ""
    target: str = ""

    @property
    def queued(self) -> bool:
        return bool(self.job_id)


class Cadence:
    """When to show a growing answer: not before ``first_after_s``, then every ``every_s``."""

    def __init__(
        self,
        first_after_s: float = FIRST_UPDATE_AFTER_S,
        every_s: float = UPDATE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_after_s, self.every_s, self.clock = first_after_s, every_s, clock
        self.started = clock()
        self.last: float | None = None

    def due(self) -> bool:
        """Whether to show an update now; True also marks it as shown."""
        now = self.clock()
        if now - self.started < self.first_after_s:
            return False
        if self.last is not None and now - self.last < self.every_s:
            return False
        self.last = now
        return True


def parse_ingest_target(text: str) -> tuple[str | None, str]:
    """``(target, "")`` for a valid ingest argument, ``(None, reason)`` otherwise.

    A target is an http(s) URL with a host, or a source name (letters, digits, ``_.:-``).
    """
    arg = text.strip()
    if not arg:
        return None, "Tell me what to ingest."
    if any(ch.isspace() for ch in arg):
        return None, "Give one URL or one source name."
    if "://" in arg or arg.lower().startswith(("http:", "https:", "www.")):
        try:
            parts = urlsplit(arg)
            host = parts.hostname
        except ValueError:
            host, parts = None, None
        if parts is None or parts.scheme not in ("http", "https") or not host:
            return None, f"`{arg}` is not a valid http(s) URL."
        return arg, ""
    if not _SOURCE_NAME.match(arg):
        return None, f"`{arg}` is neither a URL nor a source name."
    return arg, ""


AdminConfirm = Callable[[frozenset[str]], bool]
"""A platform's own look-up for an asker not listed by id: given the platform's admin list,
whether the asker is one (Slack: a member of the admin user group; Teams: their UPN is listed).
Blocking; an exception counts as "no"."""


class Conversation:
    """The shared conversation logic. Construction has no side effects; thread-safe.

    ``admins`` maps a platform to its admin ids. ``ingest_queue`` may be a factory, resolved
    at the first ingest (the Celery queue needs Redis; a bot without it still answers).
    """

    def __init__(
        self,
        answers: AnswerService,
        access: AccessResolver,
        *,
        admins: Mapping[Platform, Iterable[str]] | None = None,
        throttle: Throttle | None = None,
        ingest_queue: IngestQueue | Callable[[], IngestQueue] | None = None,
    ) -> None:
        self.answers = answers
        self.access = access
        self.admins = {
            Platform(p): frozenset(a.strip().lower() for a in ids if a.strip()) for p, ids in (admins or {}).items()
        }
        self.throttle = throttle
        self._ingest_queue = ingest_queue

    # -- limits and access --------------------------------------------------------------------
    def limited(self, msg: ChatMessage, kind: str = "question") -> str:
        """Count a question (or ``kind="ingest"``); the polite refusal when over the limit, else ""."""
        if self.throttle is None:
            return ""
        check = self.throttle.ingest if kind == "ingest" else self.throttle.question
        conversation = (msg.access_conversations or (msg.conversation,))[0]
        try:
            check(msg.platform.value, msg.asker, conversation)
        except RateLimited as exc:
            log.info("%s %s from %s in %s rate limited", msg.platform.value, kind, msg.asker, conversation)
            return messages.too_fast(exc, "ingests" if kind == "ingest" else "questions")
        return ""

    def groups(self, msg: ChatMessage, directory: Callable[[], frozenset[str]] | None = None) -> frozenset[str]:
        """The access groups for a question asked here.

        ``directory`` gives the asker's platform groups (Slack user groups, AAD groups) mapped
        to access groups; it is asked only in a private, authenticated chat, and when it fails
        the asker sees less, never more.
        """
        extra: frozenset[str] = frozenset()
        if directory is not None and msg.private and msg.verified and msg.asker:
            try:
                extra = directory()
            except Exception as exc:  # noqa: BLE001 - without the directory the asker sees less, never more
                log.warning("%s directory groups unavailable (%s); answering without them",
                            msg.platform.value, type(exc).__name__)
        groups: frozenset[str] = frozenset()
        for conversation in msg.access_conversations or (msg.conversation,):
            groups |= self.access.groups_for(
                platform=msg.platform.value, conversation=conversation, user=msg.asker,
                private_chat=msg.private, directory_groups=extra, verified=msg.verified,
            )
        return groups

    def is_admin(self, msg: ChatMessage, confirm: AdminConfirm | None = None) -> bool:
        """Whether the asker is an admin of the bot on its platform (never when unauthenticated)."""
        if not msg.verified or not msg.asker:
            return False
        admins = self.admins.get(msg.platform, frozenset())
        if msg.asker.lower() in admins:
            return True
        if confirm is None:
            return False
        try:
            return confirm(admins)
        except Exception as exc:  # noqa: BLE001 - an unconfirmable admin is not an admin
            log.warning("%s admin look-up for %s failed: %s", msg.platform.value, msg.asker, type(exc).__name__)
            return False

    def require_admin(self, msg: ChatMessage, confirm: AdminConfirm | None = None) -> None:
        """Raise :class:`AccessDenied` (with the refusal to show) unless the asker is an admin."""
        if not self.is_admin(msg, confirm):
            raise AccessDenied(messages.REFUSE_INGEST)

    # -- asking -------------------------------------------------------------------------------
    def question(self, msg: ChatMessage, directory: Callable[[], frozenset[str]] | None = None) -> Question:
        """The core's Question for a message: its access groups, thread and recent history."""
        return Question(
            text=msg.text,
            asker=msg.asker,
            platform=msg.platform,
            conversation=msg.conversation,
            thread=msg.thread,
            history=msg.history[-HISTORY_TURNS:],
            groups=self.groups(msg, directory),
        )

    def stream(self, question: Question) -> Iterator[str | Answer]:
        """Text deltas, then the final Answer (``AnswerService.stream``)."""
        return self.answers.stream(question)

    def answer(self, question: Question) -> Answer:
        return self.answers.answer(question)

    def get_answer(self, answer_id: str) -> Answer | None:
        return self.answers.get_answer(answer_id) if answer_id else None

    # -- votes --------------------------------------------------------------------------------
    def vote(self, platform: Platform, voter: str, answer_id: str, vote: Vote, comment: str = "") -> VoteResult:
        """Record a vote (one per voter and answer; a later one replaces it) on an existing answer."""
        if not answer_id:
            return VoteResult(VoteOutcome.UNKNOWN_ANSWER, vote)
        try:
            try:
                answer = self.get_answer(answer_id)
                checked = True
            except ProviderUnavailable:
                # The store is down: take the vote (the spool keeps it; the store refuses it on
                # replay if the answer does not exist) rather than lose a real one.
                answer, checked = None, False
            if answer is None and checked:
                log.info("%s vote on unknown answer %r ignored", platform.value, answer_id)
                return VoteResult(VoteOutcome.UNKNOWN_ANSWER, vote)
            self.answers.record_feedback(
                Feedback(answer_id, voter, platform, vote, comment.strip()[:2000], created_at=datetime.now(UTC))
            )
        except SupportbotError as exc:
            log.warning("could not record %s vote on %s: %s", vote.value, answer_id, exc)
            return VoteResult(VoteOutcome.FAILED, vote)
        return VoteResult(VoteOutcome.RECORDED, vote, answer)

    # -- ingest -------------------------------------------------------------------------------
    def ingest_queue(self) -> IngestQueue | None:
        """The queue (a factory is resolved once); ``None`` when none is configured."""
        queue = self._ingest_queue
        if queue is None or isinstance(queue, IngestQueue):
            return queue
        try:
            resolved = queue()
        except SupportbotError as exc:
            log.warning("no ingest queue: %s", exc)
            return None
        except Exception:  # noqa: BLE001 - a broken queue must not break answering
            log.exception("the ingest queue could not be built")
            return None
        self._ingest_queue = resolved
        return resolved

    def request_ingest(
        self, msg: ChatMessage, argument: str, address: ChatAddress, confirm: AdminConfirm | None = None,
        *, usage: str = messages.INGEST_USAGE, where: str = "here",
    ) -> IngestReply:
        """Check and queue an ingest; the worker reports progress and the result to ``address``.

        Blocking (an admin look-up, the broker). Never raises: every outcome is a reply.
        """
        target, problem = parse_ingest_target(argument)
        if target is None:
            return IngestReply(f"{problem}\n{usage}")
        try:
            self.require_admin(msg, confirm)
        except AccessDenied as refused:
            return IngestReply(str(refused), target=target)
        queue = self.ingest_queue()
        if queue is None:
            return IngestReply(messages.NO_QUEUE, target=target)
        if limited := self.limited(msg, "ingest"):
            return IngestReply(limited, target=target)
        try:
            job_id = queue.enqueue_ingest(target, f"{msg.platform.value}:{msg.asker}", address.to_notify())
        except Exception:  # noqa: BLE001 - broker errors: logged here, the admin is told briefly
            log.exception("ingest of %s could not be queued", target)
            return IngestReply(messages.QUEUE_FAILED, target=target)
        return IngestReply(messages.ingest_queued(target, job_id, where), job_id=job_id, target=target)


# -- job progress, reported by the worker --------------------------------------------------------
@dataclass
class JobNotes:
    """The notes of one job in one chat: progress at most every ``every_s`` in one message
    (updated in place where the platform allows, else a new one), then the result."""

    notifier: Notifier
    address: ChatAddress
    target: str
    every_s: float
    clock: Callable[[], float]
    started: float = 0.0
    last: float | None = None
    message_id: str = ""
    shown: tuple[object, ...] = field(default_factory=tuple)
    finished: bool = False

    def advanced(self, status: JobStatus) -> None:
        """The job moved on (called often; posts only when due and something changed)."""
        now = self.clock()
        shown = (status.done, status.total, status.current)
        if self.finished or status.state != "running" or shown == self.shown:
            return
        if now - (self.last if self.last is not None else self.started) < self.every_s:
            return
        self.last, self.shown = now, shown
        text = messages.ingest_progress(self.target, status)
        try:
            if self.message_id:
                self.notifier.update(self.address, self.message_id, text)
            else:
                self.message_id = self.notifier.post(self.address, text)
        except Exception as exc:  # noqa: BLE001 - a lost progress note must not fail the job
            log.warning("progress note for %s failed: %s", self.target, type(exc).__name__)

    def ended(self, status: JobStatus) -> None:
        """The job finished (done or failed for good): post the result, once."""
        if self.finished:
            return
        self.finished = True
        try:
            self.notifier.post(self.address, messages.ingest_result(self.target, status))
        except Exception as exc:  # noqa: BLE001 - logged; the job's result is in its record either way
            log.warning("result note for %s failed: %s", self.target, type(exc).__name__)


class JobReporter:
    """Turns a job's ``notify`` mapping into notes in the chat it came from (used by the worker)."""

    def __init__(
        self,
        notifier_for: Callable[[Platform], Notifier | None],
        *,
        progress_every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier_for = notifier_for
        self.progress_every_s = progress_every_s
        self.clock = clock

    def notes(self, target: str, notify: Mapping[str, str]) -> JobNotes | None:
        """The notes for a job, or ``None`` when it has nowhere to report (CLI, web, schedule)."""
        address = ChatAddress.from_notify(notify)
        if address is None:
            return None
        try:
            notifier = self.notifier_for(address.platform)
        except SupportbotError as exc:
            log.warning("cannot report to %s: %s", address.platform.value, exc)
            return None
        if notifier is None:
            return None
        return JobNotes(notifier, address, target, self.progress_every_s, self.clock, started=self.clock())
