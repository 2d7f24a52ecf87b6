"""The Teams bot: turns Teams activities into core calls and core results into replies.

It only translates. Who may see what comes from ``AccessResolver``; what to answer (or
decline) from ``AnswerService``; long ingest work goes to the injected ``IngestQueue``.
It speaks to Teams through :class:`adapters.teams.protocol.TurnIO` and never imports
botbuilder, so it moves unchanged to the Agents SDK.

Paths handled (``on_turn`` dispatches on the wire activity):

* ``message`` — a question (personal chat, or an @mention in a channel or group chat);
  ``ingest <target>`` from an admin; an Adaptive Card ``Action.Submit`` vote (``value``).
* ``invoke`` ``message/submitAction`` — Teams' own 👍/👎 (``feedbackLoopEnabled``).
* ``invoke`` ``adaptiveCard/action`` — the card's ``Action.Execute`` vote. Handled here
  rather than in ActivityHandler.on_adaptive_card_invoke, which fails in botbuilder 4.17.1.
* ``messageReaction`` — a reaction on one of the bot's answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.teams import render
from adapters.teams import verified as verified_card
from adapters.teams.activity import Incoming, parse
from adapters.teams.memory import ConversationHistory, ReplyIndex
from adapters.teams.protocol import ChannelGateway, InvokeReply, TurnIO
from bot.access import AccessResolver
from bot.answering import AnswerService
from bot.errors import RateLimited, SupportbotError
from bot.ports import IngestQueue, JobStatus
from bot.ratelimit import Throttle, polite_text
from bot.types import Answer, Decision, Feedback, Platform, Question, Vote
from bot.verified import FAILED_TEXT as FAILED_VERIFIED_TEXT
from bot.verified import UNVERIFIED_IDENTITY_TEXT, VerifiedService

log = logging.getLogger(__name__)

_INGEST = re.compile(r"^ingest\s+(?P<target>\S.*)$", re.IGNORECASE | re.DOTALL)
_REACTION_VOTES = {"like": Vote.UP, "heart": Vote.UP, "sad": Vote.DOWN, "angry": Vote.DOWN}
_FEEDBACK_REACTIONS = {"like": Vote.UP, "dislike": Vote.DOWN}

HELP = (
    "Ask me a support question and I'll answer from the knowledge base, with sources. "
    "In a channel or group chat, @mention me. Admins can add knowledge with `ingest <url or source>`."
)
REFUSE_INGEST = "Sorry, only the bot's admins can add knowledge. Ask one of them to run `ingest` for you."
NO_QUEUE = "Ingest isn't available here: no worker queue is configured for this bot."
FAILED = "Sorry, something went wrong while answering. Please try again in a moment."


@dataclass(frozen=True)
class TeamsOptions:
    """Timing knobs. Teams throttles streaming and updates to about one per second."""

    first_update_after_s: float = 0.8  # answers ready sooner go out as one card, no partials
    update_interval_s: float = 1.0
    ingest_poll_s: float = 2.0
    ingest_progress_every_s: float = 15.0
    ingest_timeout_s: float = 3600.0


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


class _Reply:
    """Shows a growing answer, then the final card. Subclasses pick Teams streaming or updates."""

    def __init__(self, turn: TurnIO, options: TeamsOptions) -> None:
        self.turn = turn
        self.options = options
        self.started = time.monotonic()
        self.last = 0.0
        self.broken = False

    def due(self) -> bool:
        now = time.monotonic()
        if self.broken or now - self.started < self.options.first_update_after_s:
            return False
        return now - self.last >= self.options.update_interval_s

    async def progress(self, text: str) -> None:
        if not self.due():
            return
        self.last = time.monotonic()
        try:
            await self.push(text)
        except Exception as exc:  # noqa: BLE001 - a failed partial must not lose the answer
            log.warning("teams: streaming update failed (%s); sending the answer when done", exc)
            self.broken = True

    async def push(self, text: str) -> None:
        raise NotImplementedError

    async def finish(self, answer: Answer) -> list[str]:
        raise NotImplementedError


class _TeamsStream(_Reply):
    """Teams streaming (personal chats): typing activities with ``streaminfo``, then a final message."""

    sequence = 0
    stream_id = ""

    async def push(self, text: str) -> None:
        self.sequence += 1
        sent = await self.turn.send(render.stream_chunk(text, self.sequence, self.stream_id))
        self.stream_id = self.stream_id or sent

    async def finish(self, answer: Answer) -> list[str]:
        if not self.stream_id or self.broken:
            return [await self.turn.send(render.answer_activity(answer))]
        sent = await self.turn.send(render.stream_final(answer, self.stream_id))
        return [self.stream_id, sent]


class _UpdatedMessage(_Reply):
    """Channels and group chats: one message, updated as the answer grows, then replaced by the card."""

    reply_id = ""

    async def push(self, text: str) -> None:
        if self.reply_id:
            await self.turn.update(self.reply_id, render.partial_activity(text))
        else:
            self.reply_id = await self.turn.send(render.partial_activity(text))

    async def finish(self, answer: Answer) -> list[str]:
        if self.reply_id:
            try:
                await self.turn.update(self.reply_id, render.answer_activity(answer))
                return [self.reply_id]
            except Exception as exc:  # noqa: BLE001 - fall back to a new message
                log.warning("teams: could not update the partial reply (%s); sending a new one", exc)
        return [await self.turn.send(render.answer_activity(answer))]


class TeamsBot:
    """The Teams bot logic. Constructing it has no side effects; state is bounded memory."""

    def __init__(
        self,
        answers: AnswerService,
        access: AccessResolver,
        gateway: ChannelGateway,
        *,
        admins: Sequence[str] = (),
        ingest_queue: IngestQueue | Callable[[], IngestQueue] | None = None,
        history: ConversationHistory | None = None,
        replies: ReplyIndex | None = None,
        options: TeamsOptions | None = None,
        throttle: Throttle | None = None,
        directory: Callable[[Incoming], frozenset[str]] | None = None,
        verified_identity: bool | None = None,
        verified: VerifiedService | None = None,
    ) -> None:
        self.answers = answers
        self.access = access
        self.gateway = gateway
        self.admins = frozenset(a.strip().lower() for a in admins if a.strip())
        # A callable is resolved at the first ``ingest``: the Celery queue needs Redis, and a
        # bot without one must still answer questions.
        self._ingest_queue = ingest_queue
        self.history = history or ConversationHistory()
        self.replies = replies or ReplyIndex()
        self._offered: set[str] = set()  # answers whose 👎 already invited the experts (this process)
        self.options = options or TeamsOptions()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.throttle = throttle
        # The asker's directory (AAD) groups, mapped to access groups; blocking (Graph), so run in a thread.
        self.directory = directory
        # Whether the ids an activity carries (aadObjectId, conversation, member look-ups through its
        # serviceUrl) were vouched for by a Bot Framework token. Unauthenticated (local testing
        # mode) they are claims anyone can make: public knowledge only, never an admin.
        self.verified_identity = gateway.auth_enabled if verified_identity is None else verified_identity
        self.verified = verified  # experts' answers from the "Answer this" card (adapters/teams/verified.py)

    def ingest_queue(self) -> IngestQueue | None:
        """The injected queue (resolving a factory once); ``None`` when none is configured."""
        queue = self._ingest_queue
        if queue is None or isinstance(queue, IngestQueue):
            return queue
        try:
            resolved = queue()
        except SupportbotError as exc:
            log.warning("teams: no ingest queue: %s", exc)
            return None
        except Exception:  # noqa: BLE001 - a broken queue must not break answering
            log.exception("teams: the ingest queue could not be built")
            return None
        self._ingest_queue = resolved
        return resolved

    # -- background work ---------------------------------------------------------------------
    def spawn(self, work: Coroutine[Any, Any, Any], name: str = "teams") -> asyncio.Task[Any]:
        """Run ``work`` after the HTTP request has been answered; failures are logged once."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)  # a reference, or the loop may garbage-collect the task mid-way
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("teams: %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for every background turn and ingest watcher to finish (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- dispatch ----------------------------------------------------------------------------
    async def on_turn(self, turn: TurnIO) -> InvokeReply | None:
        """Handle one activity; returns the invoke reply for invoke activities."""
        inc = parse(turn.activity)
        if inc.type == "message":
            await self._on_message(turn, inc)
        elif inc.type == "invoke":
            return await self._on_invoke(inc, turn)
        elif inc.type == "messageReaction":
            await self._on_reaction(inc, turn)
        elif inc.type == "conversationUpdate":
            await self._on_conversation_update(turn)
        return None

    async def _on_message(self, turn: TurnIO, inc: Incoming) -> None:
        if inc.value is not None and inc.value.get("supportbot") == "feedback":
            await self._card_vote(inc, inc.value, turn)  # Action.Submit
            return
        if inc.value is not None and inc.value.get("supportbot") == "verified":
            text = await self._mark_verified(turn, inc, inc.value)  # Action.Submit fallback
            if text:
                await turn.send(render.text_activity(text))
            return
        if not inc.personal and not inc.mentions_bot:
            return  # channel chatter the bot was not asked about (RSC can deliver it)
        if not inc.text or inc.text.lower() in ("help", "?", "hi", "hello"):
            await turn.send(render.text_activity(HELP))
            return
        match = _INGEST.match(inc.text)
        if self.throttle is not None:
            try:
                check = self.throttle.ingest if match else self.throttle.question
                await asyncio.to_thread(check, Platform.TEAMS.value, inc.voter, inc.access_conversation)
            except RateLimited as exc:
                await turn.send(render.text_activity(polite_text(exc, "ingests" if match else "questions")))
                return
        if match:
            await self._ingest(turn, inc, match.group("target").strip())
            return
        await self._answer(turn, inc)

    async def _on_invoke(self, inc: Incoming, turn: TurnIO | None = None) -> InvokeReply:
        value = inc.value or {}
        if inc.name == "message/submitAction":
            return await self._builtin_feedback(inc, value, turn)
        if inc.name == "adaptiveCard/action":
            action = value.get("action")
            data = action.get("data") if isinstance(action, Mapping) else None
            if turn is not None and isinstance(data, Mapping) and data.get("supportbot") == "verified":
                return InvokeReply(200, _card_message(await self._mark_verified(turn, inc, data)))
            if not isinstance(data, Mapping) or data.get("supportbot") != "feedback":
                return InvokeReply(200, _card_error(400, "unknown action"))
            ok = await self._card_vote(inc, data, turn)
            if not ok:
                return InvokeReply(200, _card_message("Sorry, I couldn't find that answer any more."))
            return InvokeReply(200, _card_message("Thanks for the feedback!"))
        return InvokeReply(501, None)

    async def _on_conversation_update(self, turn: TurnIO) -> None:
        activity = turn.activity
        inc = parse(activity)
        added = activity.get("membersAdded") or []
        if inc.personal and any(isinstance(m, Mapping) and m.get("id") == inc.bot_id for m in added):
            await turn.send(render.text_activity("Hi! " + HELP))

    # -- answering ---------------------------------------------------------------------------
    def question_for(self, inc: Incoming, directory_groups: frozenset[str] = frozenset()) -> Question:
        """The core's Question for an incoming message: access groups, history, thread."""
        groups = self.access.groups_for(
            platform=Platform.TEAMS.value, conversation=inc.access_conversation, user=inc.voter,
            private_chat=inc.personal, directory_groups=directory_groups, verified=self.verified_identity,
        )
        if inc.team_id:
            groups |= self.access.groups_for(
                platform=Platform.TEAMS.value, conversation=inc.team_id, user=inc.voter, private_chat=inc.personal,
                verified=self.verified_identity,
            )
        _, _, thread = inc.conversation_id.partition(";messageid=")
        return Question(
            text=inc.text,
            asker=inc.voter,
            platform=Platform.TEAMS,
            conversation=inc.conversation_id,
            thread=thread or inc.id,
            history=self.history.get(inc.conversation_id),
            groups=groups,
        )

    async def _events(self, question: Question) -> AsyncGenerator[str | Answer, None]:
        """AnswerService.stream (blocking: retrieval, models) run in a thread, as async events."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def work() -> None:
            try:
                for event in self.answers.stream(question):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:  # noqa: BLE001 - handed to the event loop and re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, _Failed(exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        running = loop.run_in_executor(None, work)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, _Failed):
                    raise item.error
                assert isinstance(item, str | Answer)
                yield item
        finally:
            await running

    async def _directory_groups(self, inc: Incoming) -> frozenset[str]:
        if self.directory is None or not inc.personal or not self.verified_identity:
            return frozenset()  # directory groups only count where nobody else reads the answer
        try:
            return await asyncio.to_thread(self.directory, inc)
        except Exception as exc:  # noqa: BLE001 - without the directory the asker sees less, never more
            log.warning("teams: directory groups unavailable (%s); answering without them", type(exc).__name__)
            return frozenset()

    async def _answer(self, turn: TurnIO, inc: Incoming) -> None:
        question = self.question_for(inc, await self._directory_groups(inc))
        reply: _Reply = (_TeamsStream if inc.personal else _UpdatedMessage)(turn, self.options)
        events = self._events(question)
        # The typing indicator goes out while retrieval already runs in its thread.
        first = asyncio.ensure_future(anext(events))
        try:
            await turn.send(render.typing_activity())
        except Exception as exc:  # noqa: BLE001 - no typing dots is no reason to lose the answer
            log.warning("teams: typing indicator failed: %s", exc)
        text, answer = "", None
        try:
            event: str | Answer = await first
            while True:
                if isinstance(event, Answer):
                    answer = event
                else:
                    text += event
                    await reply.progress(text)
                event = await anext(events)
        except StopAsyncIteration:
            pass
        except SupportbotError as exc:
            log.error("teams: answering failed: %s", exc)
            await turn.send(render.text_activity(FAILED))
            return
        except Exception:  # noqa: BLE001 - a bug must still get the asker a reply, and a traceback here
            log.exception("teams: answering failed")
            await turn.send(render.text_activity(FAILED))
            return
        finally:
            await events.aclose()
        if answer is None:  # pragma: no cover - AnswerService always ends with an Answer
            await turn.send(render.text_activity(FAILED))
            return
        for reply_id in await reply.finish(answer):
            self.replies.remember(reply_id, answer.id)
        self.history.add(inc.conversation_id, question.text, answer.text)
        if self.verified is not None and self.verified.offers_answer_this(answer, private_chat=inc.personal):
            try:  # where colleagues read along, a decline invites the experts to answer
                await turn.send(verified_card.answer_this_activity(answer.id))
            except Exception as exc:  # noqa: BLE001 - the answer itself went out
                log.warning("teams: could not offer 'Answer this': %s", exc)

    # -- verified answers --------------------------------------------------------------------
    async def _mark_verified(self, turn: TurnIO, inc: Incoming, data: Mapping[str, Any]) -> str:
        """The "Use as answer" card action: the core decides; returns what to tell the marker.
        On success the thread is told too."""
        if self.verified is None:
            return "Verified answers are not enabled for this bot."
        if not self.verified_identity:
            # Expert ids in an unauthenticated activity are claims anyone can make: a marked answer
            # would be knowledge planted by whoever sent it (issue 14).
            return UNVERIFIED_IDENTITY_TEXT
        reply = verified_card.reply_from_card(inc, dict(data))
        admin = await self.is_admin(turn, inc)
        try:
            result = await asyncio.to_thread(self.verified.mark, reply, inc.voter, marker_is_admin=admin)
        except Exception:  # noqa: BLE001 - tell the marker; nothing was half-saved in the thread
            log.exception("teams: marking a verified answer failed")
            return FAILED_VERIFIED_TEXT
        if result.ok:
            try:
                await turn.send(render.text_activity(result.text))
            except Exception as exc:  # noqa: BLE001 - the answer is saved either way
                log.warning("teams: could not announce the verified answer: %s", exc)
        return result.text

    # -- feedback ----------------------------------------------------------------------------
    async def _record(
        self, inc: Incoming, answer_id: str, vote: Vote, comment: str = "", turn: TurnIO | None = None
    ) -> bool:
        answer = await asyncio.to_thread(self.answers.get_answer, answer_id) if answer_id else None
        if answer is None:
            log.info("teams: vote on unknown answer %r ignored", answer_id)
            return False
        feedback = Feedback(
            answer_id=answer_id, user=inc.voter, platform=Platform.TEAMS, vote=vote, comment=comment,
            created_at=datetime.now(UTC),
        )
        await asyncio.to_thread(self.answers.record_feedback, feedback)
        if vote == Vote.DOWN and turn is not None:
            await self._after_down_vote(turn, inc, answer)
        return True

    async def _after_down_vote(self, turn: TurnIO, inc: Incoming, answer: Answer) -> None:
        """After a 👎 on an answer where colleagues read along, invite the experts to answer it
        (once per answer), as a decline does."""
        if (
            self.verified is None
            or inc.personal
            or answer.decision != Decision.ANSWERED
            or answer.id in self._offered
        ):
            return
        self._offered.add(answer.id)
        try:
            await turn.send(verified_card.answer_this_activity(answer.id))
        except Exception as exc:  # noqa: BLE001 - the vote is recorded either way
            log.warning("teams: could not offer 'Answer this' after a 👎: %s", exc)

    async def _card_vote(self, inc: Incoming, data: Mapping[str, Any], turn: TurnIO | None = None) -> bool:
        try:
            vote = Vote(str(data.get("vote")))
        except ValueError:
            return False
        return await self._record(inc, str(data.get("answer_id") or ""), vote, turn=turn)

    async def _builtin_feedback(
        self, inc: Incoming, value: Mapping[str, Any], turn: TurnIO | None = None
    ) -> InvokeReply:
        action = value.get("actionValue")
        reaction = action.get("reaction") if isinstance(action, Mapping) else None
        vote = _FEEDBACK_REACTIONS.get(str(reaction))
        if value.get("actionName") != "feedback" or vote is None or not isinstance(action, Mapping):
            return InvokeReply(400, None)
        answer_id = self.replies.answer_for(inc.reply_to_id) or ""
        await self._record(inc, answer_id, vote, _feedback_text(action.get("feedback")), turn)
        # Teams shows its own "thanks" UI; an empty 200 tells it the submission worked.
        return InvokeReply(200, {})

    async def _on_reaction(self, inc: Incoming, turn: TurnIO | None = None) -> None:
        answer_id = self.replies.answer_for(inc.reply_to_id)
        for reaction in inc.reactions_added:
            vote = _REACTION_VOTES.get(reaction)
            if vote is not None and answer_id:
                await self._record(inc, answer_id, vote, turn=turn)

    # -- ingest ------------------------------------------------------------------------------
    async def is_admin(self, turn: TurnIO, inc: Incoming) -> bool:
        """Whether the sender is in ``teams_admins``, by AAD object id or by UPN.

        Never for an unauthenticated activity: its aadObjectId is a claim, and the member
        look-up would go to the serviceUrl the same sender chose (and answer as they like).
        """
        if not self.admins or not self.verified_identity:
            return False
        if inc.user_aad and inc.user_aad.lower() in self.admins:
            return True
        if not any("@" in a for a in self.admins) or not inc.user_id:
            return False
        try:
            member = await turn.member(inc.user_id)  # Teams does not put the UPN in activities
        except Exception as exc:  # noqa: BLE001 - an unconfirmable admin is not an admin
            log.warning("teams: could not look up member %s: %s", inc.user_id, exc)
            return False
        upn = str(member.get("userPrincipalName") or member.get("email") or "").lower()
        return bool(upn) and upn in self.admins

    async def _ingest(self, turn: TurnIO, inc: Incoming, target: str) -> None:
        if not await self.is_admin(turn, inc):
            await turn.send(render.text_activity(REFUSE_INGEST))
            return
        queue = self.ingest_queue()
        if queue is None:
            await turn.send(render.text_activity(NO_QUEUE))
            return
        reference = turn.reference()
        notify = {
            "platform": Platform.TEAMS.value,
            "conversation": inc.conversation_id,
            "user": inc.voter,
            "reference": json.dumps(reference),
        }
        try:
            job_id = await asyncio.to_thread(queue.enqueue_ingest, target, f"teams:{inc.voter}", notify)
        except SupportbotError as exc:  # our own errors never carry secrets: show the reason
            await turn.send(render.text_activity(f"Couldn't queue the ingest of `{target}`: {exc}"))
            return
        except Exception:  # noqa: BLE001 - broker errors: log them, tell the admin briefly
            log.exception("teams: ingest of %s could not be queued", target)
            await turn.send(render.text_activity("Sorry, I couldn't queue that ingest. Please try again later."))
            return
        await turn.send(render.text_activity(f"Queued the ingest of `{target}` (job `{job_id}`). I'll post progress here."))
        self.spawn(self.watch_ingest(queue, job_id, target, reference), name=f"ingest watcher {job_id}")

    async def watch_ingest(self, queue: IngestQueue, job_id: str, target: str, reference: Mapping[str, Any]) -> None:
        """Poll the job until it finishes; post progress and the result to the conversation."""
        o = self.options
        started = last_report = time.monotonic()
        last: JobStatus | None = None
        while time.monotonic() - started < o.ingest_timeout_s:
            await asyncio.sleep(o.ingest_poll_s)
            try:
                status = await asyncio.to_thread(queue.status, job_id)
            except SupportbotError as exc:
                log.warning("teams: status of job %s unavailable: %s", job_id, exc)
                continue
            if status.finished:
                if status.state == "done":
                    await self.notify(reference, f"Finished ingesting `{target}`: {status.summary or 'done'}.")
                else:
                    await self.notify(reference, f"Ingest of `{target}` failed: {status.error or 'unknown error'}.")
                return
            changed = last is None or status.state != last.state
            moved = last is not None and status.done != last.done
            if changed and status.state == "running" or moved and time.monotonic() - last_report >= o.ingest_progress_every_s:
                await self.notify(reference, _progress(target, status))
                last_report = time.monotonic()
            last = status
        await self.notify(reference, f"Stopped watching the ingest of `{target}` (job `{job_id}`); it is still running.")

    async def notify(self, reference: Mapping[str, Any], text: str) -> None:
        """Post ``text`` proactively in the referenced conversation (failures are logged)."""

        async def send(turn: TurnIO) -> None:
            await turn.send(render.text_activity(text))

        try:
            await self.gateway.continue_conversation(reference, send)
        except Exception as exc:  # noqa: BLE001 - a lost progress note must not stop the watcher
            log.warning("teams: proactive message failed: %s", exc)


def _progress(target: str, status: JobStatus) -> str:
    total = f" of {status.total}" if status.total is not None else ""
    current = f" (now: {status.current})" if status.current else ""
    return f"Ingesting `{target}`: {status.done}{total} documents so far{current}."


def _feedback_text(raw: object) -> str:
    """Teams sends the feedback form as a JSON string ``{"feedbackText": ...}`` (or an object)."""
    if isinstance(raw, str):
        text = raw
        try:
            raw = json.loads(text)
        except ValueError:
            return text.strip()[:2000]
    if isinstance(raw, Mapping):
        return str(raw.get("feedbackText") or "").strip()[:2000]
    return ""


def _card_message(text: str) -> dict[str, Any]:
    return {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text}


def _card_error(code: int, message: str) -> dict[str, Any]:
    return {
        "statusCode": code,
        "type": "application/vnd.microsoft.error",
        "value": {"code": "BadRequest", "message": message},
    }
