"""The Teams bot: turns Teams activities into core calls and core results into replies.

It only translates: parse (``adapters/teams/activity.py``) → the conversation core
(:class:`bot.conversation.Conversation`: limits, access, admins, votes, ``ingest``, every
sentence) → render (``adapters/teams/render.py``). Ingest progress and results are posted by
the worker (``adapters/teams/notify.py``), not watched from here. It speaks to Teams through
:class:`adapters.teams.protocol.TurnIO` and never imports botbuilder, so it moves unchanged
to the Agents SDK.

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
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.teams import render
from adapters.teams import verified as verified_card
from adapters.teams.activity import Incoming, parse
from adapters.teams.delivery import Reply, TeamsStream, UpdatedMessage, answer_events
from adapters.teams.memory import ConversationHistory, ReplyIndex
from adapters.teams.notify import address_from_reference
from adapters.teams.protocol import ChannelGateway, InvokeReply, TurnIO
from bot import messages
from bot.conversation import FIRST_UPDATE_AFTER_S, UPDATE_INTERVAL_S, Cadence, ChatMessage, Conversation
from bot.errors import SupportbotError
from bot.types import Answer, Decision, Platform, Question, Vote
from bot.verified import FAILED_TEXT as FAILED_VERIFIED_TEXT
from bot.verified import UNVERIFIED_IDENTITY_TEXT, VerifiedService

log = logging.getLogger(__name__)

_INGEST = re.compile(r"^ingest\s+(?P<target>\S.*)$", re.IGNORECASE | re.DOTALL)
_REACTION_VOTES = {"like": Vote.UP, "heart": Vote.UP, "sad": Vote.DOWN, "angry": Vote.DOWN}
_FEEDBACK_REACTIONS = {"like": Vote.UP, "dislike": Vote.DOWN}

HELP = messages.HELP
REFUSE_INGEST = messages.REFUSE_INGEST
FAILED = messages.FAILED


@dataclass(frozen=True)
class TeamsOptions:
    """Timing knobs (the core's cadence by default). Teams throttles updates to about one per second."""

    first_update_after_s: float = FIRST_UPDATE_AFTER_S  # answers ready sooner go out as one card
    update_interval_s: float = UPDATE_INTERVAL_S


class TeamsBot:
    """The Teams bot: parse → :class:`Conversation` → render. No side effects on construction;
    its state is bounded memory."""

    def __init__(
        self,
        conversation: Conversation,
        gateway: ChannelGateway,
        *,
        history: ConversationHistory | None = None,
        replies: ReplyIndex | None = None,
        options: TeamsOptions | None = None,
        directory: Callable[[Incoming], frozenset[str]] | None = None,
        verified_identity: bool | None = None,
        verified: VerifiedService | None = None,
    ) -> None:
        self.conversation = conversation
        self.gateway = gateway
        self.history = history or ConversationHistory()
        self.replies = replies or ReplyIndex()
        self._offered: set[str] = set()  # answers whose 👎 already invited the experts (this process)
        self.options = options or TeamsOptions()
        self._tasks: set[asyncio.Task[Any]] = set()
        # The asker's directory (AAD) groups, mapped to access groups; blocking (Graph), so run in a thread.
        self.directory = directory
        # Whether the ids an activity carries (aadObjectId, conversation, member look-ups through its
        # serviceUrl) were vouched for by a Bot Framework token. Unauthenticated (local testing
        # mode) they are claims anyone can make: public knowledge only, never an admin.
        self.verified_identity = gateway.auth_enabled if verified_identity is None else verified_identity
        self.verified = verified  # experts' answers from the "Answer this" card (adapters/teams/verified.py)

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
        """Wait for every background turn to finish (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- parse -------------------------------------------------------------------------------
    def chat_message(self, inc: Incoming) -> ChatMessage:
        """The core's view of an incoming message: who, where, private or not, authenticated or not."""
        _, _, thread = inc.conversation_id.partition(";messageid=")
        return ChatMessage(
            platform=Platform.TEAMS,
            asker=inc.voter,
            conversation=inc.conversation_id,
            text=inc.text,
            private=inc.personal,
            thread=thread or inc.id,
            history=self.history.get(inc.conversation_id),
            access_conversations=(inc.access_conversation, *((inc.team_id,) if inc.team_id else ())),
            verified=self.verified_identity,
        )

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
        if match := _INGEST.match(inc.text):
            await self._ingest(turn, inc, match.group("target").strip())
            return
        if limited := await asyncio.to_thread(self.conversation.limited, self.chat_message(inc)):
            await turn.send(render.text_activity(limited))
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
            return InvokeReply(200, _card_message(await self._card_vote(inc, data, turn)))
        return InvokeReply(501, None)

    async def _on_conversation_update(self, turn: TurnIO) -> None:
        activity = turn.activity
        inc = parse(activity)
        added = activity.get("membersAdded") or []
        if inc.personal and any(isinstance(m, Mapping) and m.get("id") == inc.bot_id for m in added):
            await turn.send(render.text_activity("Hi! " + HELP))

    # -- answering ---------------------------------------------------------------------------
    def question_for(self, inc: Incoming) -> Question:
        """The core's Question for an incoming message (blocking: the directory may call Graph)."""
        directory = self.directory
        return self.conversation.question(
            self.chat_message(inc), None if directory is None else (lambda: directory(inc))
        )

    async def _answer(self, turn: TurnIO, inc: Incoming) -> None:
        question = await asyncio.to_thread(self.question_for, inc)
        reply: Reply = (TeamsStream if inc.personal else UpdatedMessage)(
            turn, Cadence(self.options.first_update_after_s, self.options.update_interval_s)
        )
        events = answer_events(self.conversation.stream, question)
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
    ) -> str:
        """Record a vote through the core; returns what to tell the voter."""
        result = await asyncio.to_thread(self.conversation.vote, Platform.TEAMS, inc.voter, answer_id, vote, comment)
        if result.recorded and vote == Vote.DOWN and turn is not None and result.answer is not None:
            await self._after_down_vote(turn, inc, result.answer)
        return result.text

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

    async def _card_vote(self, inc: Incoming, data: Mapping[str, Any], turn: TurnIO | None = None) -> str:
        try:
            vote = Vote(str(data.get("vote")))
        except ValueError:
            return messages.VOTE_UNKNOWN_ANSWER
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

    # -- admins and ingest -------------------------------------------------------------------
    async def is_admin(self, turn: TurnIO, inc: Incoming) -> bool:
        """Whether the sender is an admin (the core's rule): listed by AAD object id, or by the
        UPN Teams gives for the member (looked up only when a UPN is listed; never for an
        unauthenticated activity, whose member look-up would go to a serviceUrl the sender chose)."""
        confirm = self._upn_confirm(turn, inc, asyncio.get_running_loop())
        return await asyncio.to_thread(self.conversation.is_admin, self.chat_message(inc), confirm)

    def _upn_confirm(
        self, turn: TurnIO, inc: Incoming, loop: asyncio.AbstractEventLoop
    ) -> Callable[[frozenset[str]], bool]:
        def confirm(admins: frozenset[str]) -> bool:
            if not any("@" in a for a in admins) or not inc.user_id:
                return False
            # Teams does not put the UPN in activities: ask the channel, on the turn's loop.
            member = asyncio.run_coroutine_threadsafe(turn.member(inc.user_id), loop).result(timeout=30)
            upn = str(member.get("userPrincipalName") or member.get("email") or "").lower()
            return bool(upn) and upn in admins

        return confirm

    async def _ingest(self, turn: TurnIO, inc: Incoming, argument: str) -> None:
        address = address_from_reference(turn.reference(), inc.user_id)
        reply = await asyncio.to_thread(
            self.conversation.request_ingest,
            self.chat_message(inc),
            argument,
            address,
            self._upn_confirm(turn, inc, asyncio.get_running_loop()),
            usage=messages.INGEST_USAGE_TEAMS,
        )
        await turn.send(render.text_activity(reply.text))


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
