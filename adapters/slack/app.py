"""The Slack app: bolt listeners that turn Slack events into Questions and Answers into Block Kit.

This module only translates. What to answer and who may see what come from the core
(``AnswerService``, ``AccessResolver``); long ingest work goes to the workers through the
``IngestQueue`` port. Every listener acknowledges first (events are acknowledged by bolt
itself) and then works on bolt's listener thread pool, so Slack always gets its response
within 3 seconds.

Listeners::

    app_mention, message   → answer in the thread (deduplicated per message via SlackState)
    reaction_added         → 👍/👎 on an answer is a vote; ✅ on an expert's reply: verified answer
    message shortcut       → "Use as answer" (adapters/slack/verified.py)
    block_actions          → vote buttons, "tell us what was wrong", "Share in channel"
    view_submission        → the "what was wrong" comment
    /ask, /ingest          → private answer; ingest through the workers with progress
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from adapters.slack.render import (
    ACTION_COMMENT,
    ACTION_SHARE,
    ACTION_VOTE_DOWN,
    ACTION_VOTE_UP,
    VIEW_FEEDBACK,
    comment_prompt_blocks,
    escape,
    feedback_modal,
    metadata,
    partial_text,
    render_answer,
    share_button,
    thanks_text,
)
from adapters.slack.state import SlackState
from adapters.slack.verified import SlackVerified
from bot.access import AccessResolver
from bot.answering import AnswerService
from bot.errors import ConfigError, RateLimited, SupportbotError
from bot.ports import IngestQueue, JobStatus
from bot.ratelimit import Throttle, polite_text
from bot.types import Answer, Feedback, Platform, Question, Turn, Vote
from bot.verified import VerifiedService

if TYPE_CHECKING:
    from adapters.factory import Services
    from adapters.settings import Settings

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 10  # each waits Retry-After: a 429 delays an answer, it never drops it
WORKING_REACTION = "eyes"
UP_REACTIONS = frozenset({"+1", "thumbsup"})
DOWN_REACTIONS = frozenset({"-1", "thumbsdown"})
ANSWERABLE_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})

FAILURE_TEXT = "Sorry, something went wrong while I was answering. Please try again in a minute."
REFUSAL_TEXT = "Sorry, only the knowledge base admins can add sources. Ask one of them to run it for you."
EMPTY_QUESTION_TEXT = "Hi! Ask me a question and I'll answer from the knowledge base, with sources."
ASK_USAGE = "Usage: `/ask <question>`, e.g. `/ask How do I reset my password?` (only you see the answer)."
INGEST_USAGE = (
    "Usage: `/ingest <url or source name>`, e.g. `/ingest https://help.example.com/guide` or "
    "`/ingest handbook`. I'll tell you here when it has finished."
)

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_USERGROUP = re.compile(r"<!subteam\^[A-Z0-9]+(?:\|([^>]*))?>")


# -- pure helpers (unit-tested) -----------------------------------------------------------------
def clean_text(text: str, bot_user_id: str | None) -> str:
    """A Slack message's text as plain text: the bot's own mention removed, links and
    channel references reduced to their labels, Slack's HTML escapes undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = _SLACK_LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = _CHANNEL.sub(r"#\1", text)
    text = _SPECIAL.sub(r"@\1", text)
    text = _USERGROUP.sub(lambda m: "@" + (m.group(1) or "group"), text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"\s+", " ", text).strip()


def parse_ingest_target(text: str) -> tuple[str | None, str]:
    """``(target, "")`` for a valid ``/ingest`` argument, ``(None, reason)`` otherwise.

    A target is an http(s) URL with a host, or a source name (letters, digits, ``_.:-``).
    """
    arg = text.strip()
    if arg.startswith("<") and arg.endswith(">"):  # Slack may send links as <url> or <url|label>
        arg = arg[1:-1].split("|", 1)[0]
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
            return None, f"`{escape(arg)}` is not a valid http(s) URL."
        return arg, ""
    if not _SOURCE_NAME.match(arg):
        return None, f"`{escape(arg)}` is neither a URL nor a source name."
    return arg, ""


def make_client(token: str, base_url: str = "https://slack.com/api/", *, timeout: int = 30) -> WebClient:
    """A WebClient aimed at ``base_url`` (GovSlack, a proxy, a test server) that waits out 429s."""
    if not base_url.endswith("/"):
        base_url += "/"
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(),
            RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
    )


def ensure_rate_limit_retries(client: WebClient) -> WebClient:
    """Add a RateLimitErrorRetryHandler to an injected client that lacks one."""
    if not any(isinstance(h, RateLimitErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES))
    return client


@dataclass
class _Delivery:
    """Where an answer in progress is shown: nothing yet, a chat stream, or a message we update."""

    channel: str
    thread_ts: str
    team: str
    user: str
    ts: str | None = None
    mode: str = ""  # "" | "stream" | "update"
    sent: int = 0  # characters already streamed


class _ResponseBudget:
    """Slack lets a response_url be used 5 times within 30 minutes; after that, DM the user."""

    def __init__(self, respond: Respond, client: WebClient, user: str, clock: Callable[[], float]) -> None:
        self.respond, self.client, self.user, self.clock = respond, client, user, clock
        self.uses, self.expires = 0, clock() + 29 * 60

    def send(self, text: str, *, final: bool = False) -> None:
        # Keep the fifth use for the final result.
        if self.clock() < self.expires and (self.uses < 4 or (final and self.uses < 5)):
            self.uses += 1
            try:
                self.respond(text=text, response_type="ephemeral", replace_original=False)
                return
            except Exception as exc:  # noqa: BLE001 - a dead response_url falls through to a DM
                log.warning("response_url failed (%s); sending a DM instead", type(exc).__name__)
        if not final and self.uses >= 4:
            return  # progress is optional; don't spam DMs with it
        try:
            self.client.chat_postMessage(channel=self.user, text=text)
        except SlackClientError as exc:
            log.error("could not tell %s about their ingest: %s", self.user, exc)


class SlackBot:
    """The bolt App with supportbot's listeners; ``.app`` is what the HTTP and Socket Mode runners drive.

    Everything it talks to is passed in: the answer service and access resolver from the
    core, the WebClient (aimed at the configured Slack API URL), the IngestQueue, and the
    SlackState used for dedup and lookups.
    """

    def __init__(
        self,
        *,
        answers: AnswerService,
        access: AccessResolver,
        client: WebClient,
        signing_secret: str | None,
        state: SlackState,
        ingest_queue: IngestQueue | None = None,
        admins: Sequence[str] = (),
        admin_group: str | None = None,
        socket_mode: bool = False,
        streaming: bool = True,
        stream_after_s: float = 0.8,
        update_interval_s: float = 1.0,
        history_turns: int = 10,
        poll_interval_s: float = 2.0,
        progress_every_s: float = 30.0,
        ingest_timeout_s: float = 6 * 3600,
        workers: int = 16,
        clock: Callable[[], float] = time.monotonic,
        throttle: Throttle | None = None,
        directory: Callable[[str], frozenset[str]] | None = None,
        verified: VerifiedService | None = None,
    ) -> None:
        self.answers = answers
        self.throttle = throttle
        self.directory = directory  # a DM asker's Slack user groups → access groups
        self.access = access
        self.client = ensure_rate_limit_retries(client)
        self.state = state
        self.ingest_queue = ingest_queue
        self.admins = frozenset(admins)
        self.admin_group = admin_group
        self.streaming = streaming
        self.stream_after_s = stream_after_s
        self.update_interval_s = update_interval_s
        self.history_turns = history_turns
        self.poll_interval_s = poll_interval_s
        self.progress_every_s = progress_every_s
        self.ingest_timeout_s = ingest_timeout_s
        self.clock = clock
        self._stream_methods_ok = streaming and hasattr(client, "chat_startStream")
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slack-listener")
        self.app = App(
            client=self.client,
            signing_secret=signing_secret,
            # Socket Mode messages come over an authenticated websocket: nothing to sign.
            request_verification_enabled=not socket_mode,
            # auth.test runs on the first request instead: constructors have no side effects.
            token_verification_enabled=False,
            listener_executor=self._executor,
            logger=logging.getLogger("slack_bolt.supportbot"),
        )
        # Experts' replies marked as answers (✅, "Use as answer", "Answer this"): adapters/slack/verified.py
        self.verified = None if verified is None else SlackVerified(self, verified)
        if self.verified is not None:
            self.verified.register(self.app)
        self._register(self.app)

    def close(self) -> None:
        """Stop ingest pollers and let running listeners finish."""
        self._stopping.set()
        self._executor.shutdown(wait=True, cancel_futures=False)

    # -- wiring --------------------------------------------------------------------------------
    def _register(self, app: App) -> None:
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.event("reaction_added")(self._on_reaction)
        app.action(ACTION_VOTE_UP)(self._on_vote)
        app.action(ACTION_VOTE_DOWN)(self._on_vote)
        app.action(ACTION_COMMENT)(self._on_comment_button)
        app.action(ACTION_SHARE)(self._on_share)
        app.view(VIEW_FEEDBACK)(self._on_feedback_view)
        app.command("/ask")(self._on_ask)
        app.command("/ingest")(self._on_ingest)
        app.error(self._on_error)

    def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        # Only what identifies the request: never the payload's tokens or response_url.
        kind = body.get("type") or body.get("command") or "request"
        log.error("Slack %s failed: %s: %s", kind, type(error).__name__, error)

    # -- questions -----------------------------------------------------------------------------
    def _on_mention(self, event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        self._answer_event(event, self._team(body, context), context.bot_user_id)

    def _on_message(self, event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        if event.get("subtype") not in ANSWERABLE_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return
        team, bot_user = self._team(body, context), context.bot_user_id
        ts, thread_ts = event["ts"], event.get("thread_ts")
        text = event.get("text") or ""
        if event.get("channel_type") == "im":
            pass  # a DM is always addressed to the bot
        elif bot_user and f"<@{bot_user}" in text:
            pass  # a mention: the app_mention for the same message is deduplicated
        elif not (
            thread_ts and thread_ts != ts and self.state.is_bot_thread(team, event["channel"], thread_ts)
        ):
            return
        elif self.verified is not None and self.verified.awaits_expert(event["channel"], thread_ts, event["user"]):
            return  # an expert answering the question the bot could not: not a question for the bot
        self._answer_event(event, team, bot_user)

    def _answer_event(self, event: dict[str, Any], team: str, bot_user: str | None) -> None:
        channel, ts, user = event["channel"], event["ts"], event.get("user", "")
        thread_ts = event.get("thread_ts") or ts
        if not self.state.claim(team, channel, ts):
            log.debug("duplicate delivery of %s/%s ignored", channel, ts)
            return
        self._react(channel, ts, add=True)
        delivery = _Delivery(channel, thread_ts, team, user)
        try:
            text = clean_text(event.get("text") or "", bot_user)
            if not text:
                self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=EMPTY_QUESTION_TEXT)
                return
            if not self._allowed(channel, user, thread_ts):
                return
            history = self._history(channel, thread_ts, ts, bot_user) if event.get("thread_ts") else ()
            private = event.get("channel_type") == "im" or channel.startswith("D")
            question = Question(
                text=text,
                asker=user,
                platform=Platform.SLACK,
                conversation=channel,
                thread=thread_ts,
                history=history,
                groups=self.access.groups_for(
                    platform="slack", conversation=channel, user=user, private_chat=private,
                    directory_groups=self._directory_groups(user, private),
                ),
            )
            self._deliver(question, delivery)
            self.state.mark_thread(team, channel, thread_ts)
        except Exception:
            log.exception("answering Slack message %s/%s failed", channel, ts)
            self._tell_failure(delivery)
        finally:
            self._react(channel, ts, add=False)

    def _history(
        self, channel: str, thread_ts: str, current_ts: str, bot_user: str | None
    ) -> tuple[Turn, ...]:
        """Earlier turns of the thread, oldest first; none if Slack won't give them (the answer
        is still worth giving without them)."""
        try:
            reply = self.client.conversations_replies(channel=channel, ts=thread_ts, limit=50)
        except SlackApiError as exc:
            log.warning(
                "conversations.replies failed (%s); answering without the thread", exc.response.get("error")
            )
            return ()
        turns: list[Turn] = []
        for message in reply.get("messages") or []:
            mts = str(message.get("ts", ""))
            if not mts or float(mts) >= float(current_ts):
                continue
            mine = bool(message.get("bot_id")) or (bot_user is not None and message.get("user") == bot_user)
            text = message.get("text") or ""
            if mine:  # drop the fallback's source list: it is not part of what was said
                text = re.sub(r"\nSources: .*\Z", "", text, flags=re.DOTALL)
            text = clean_text(text, bot_user)
            if text:
                turns.append(Turn("assistant" if mine else "user", text))
        return tuple(turns[-self.history_turns :])

    def _deliver(self, question: Question, d: _Delivery) -> Answer:
        """Run the answer service; show the text as it is written when that takes a while;
        post (or replace the progress with) the final Answer."""
        started = last = self.clock()
        pieces: list[str] = []
        answer: Answer | None = None
        for item in self.answers.stream(question):
            if isinstance(item, Answer):
                answer = item
                continue
            pieces.append(item)
            now = self.clock()
            # Fast answers are posted once, complete; slow ones show progress about once a second.
            if (
                self.streaming
                and now - started >= self.stream_after_s
                and now - last >= self.update_interval_s
            ):
                self._show_progress(d, "".join(pieces))
                last = now
        if answer is None:  # the service's contract: the last item is the Answer
            raise RuntimeError("the answer service ended without an Answer")
        self._post_answer(answer, d)
        return answer

    def _show_progress(self, d: _Delivery, text: str) -> None:
        if d.mode == "" and self._stream_methods_ok:
            try:
                reply = self.client.chat_startStream(
                    channel=d.channel,
                    thread_ts=d.thread_ts,
                    markdown_text=text,
                    recipient_team_id=d.team or None,
                    recipient_user_id=d.user or None,
                )
                d.ts, d.mode, d.sent = str(reply["ts"]), "stream", len(text)
                return
            except SlackApiError as exc:
                # e.g. a workspace or plan without streaming: chat.update works everywhere.
                log.info("chat.startStream unavailable (%s); using chat.update", exc.response.get("error"))
                self._stream_methods_ok = False
        if d.mode == "stream":
            try:
                self.client.chat_appendStream(channel=d.channel, ts=str(d.ts), markdown_text=text[d.sent :])
                d.sent = len(text)
                return
            except SlackApiError as exc:  # the stream expired: keep going with chat.update on its ts
                log.info("chat.appendStream failed (%s); using chat.update", exc.response.get("error"))
                d.mode = "update"
        if d.mode == "":
            reply = self.client.chat_postMessage(
                channel=d.channel, thread_ts=d.thread_ts, text=partial_text(text)
            )
            d.ts, d.mode = str(reply["ts"]), "update"
            return
        self.client.chat_update(channel=d.channel, ts=str(d.ts), text=partial_text(text))

    def _post_answer(self, answer: Answer, d: _Delivery) -> None:
        extra = [] if self.verified is None else self.verified.extra_actions(answer)
        first, *rest = render_answer(answer, extra_actions=extra)
        meta = metadata(answer.id)
        if d.ts is not None:
            if d.mode == "stream":
                try:
                    self.client.chat_stopStream(channel=d.channel, ts=d.ts)
                except SlackApiError as exc:
                    log.info(
                        "chat.stopStream failed (%s); replacing the message anyway", exc.response.get("error")
                    )
            # The final Answer is authoritative (citations renumbered, or declined): replace the draft.
            self.client.chat_update(
                channel=d.channel, ts=d.ts, text=first.text, blocks=list(first.blocks), metadata=meta
            )
            ts = d.ts
        else:
            ts = self._post(d.channel, d.thread_ts, first.text, list(first.blocks), meta)
        self.state.remember_answer(d.channel, ts, answer.id, d.thread_ts)
        for message in rest:
            more = self._post(d.channel, d.thread_ts, message.text, list(message.blocks), meta)
            self.state.remember_answer(d.channel, more, answer.id, d.thread_ts)

    def _post(
        self, channel: str, thread_ts: str | None, text: str, blocks: list[Any], meta: dict[str, Any]
    ) -> str:
        reply = self.client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=text,
            blocks=blocks,
            metadata=meta,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(reply["ts"])

    def _tell_failure(self, d: _Delivery) -> None:
        try:
            if d.ts is not None:
                if d.mode == "stream":
                    with contextlib.suppress(SlackApiError):  # replaced just below either way
                        self.client.chat_stopStream(channel=d.channel, ts=d.ts)
                self.client.chat_update(channel=d.channel, ts=d.ts, text=FAILURE_TEXT, blocks=[])
            else:
                self.client.chat_postMessage(channel=d.channel, thread_ts=d.thread_ts, text=FAILURE_TEXT)
        except SlackClientError as exc:
            log.error("could not tell the user about the failure either: %s", exc)

    def _react(self, channel: str, ts: str, *, add: bool) -> None:
        # Cosmetic: a missing reactions:write scope must not stop the answer.
        try:
            if add:
                self.client.reactions_add(channel=channel, timestamp=ts, name=WORKING_REACTION)
            else:
                self.client.reactions_remove(channel=channel, timestamp=ts, name=WORKING_REACTION)
        except SlackClientError as exc:
            log.debug("reaction %s failed: %s", "add" if add else "remove", exc)

    # -- feedback ------------------------------------------------------------------------------
    def _on_reaction(self, event: dict[str, Any], context: BoltContext) -> None:
        item = event.get("item") or {}
        name = str(event.get("reaction", "")).split("::", 1)[0]  # drop skin tones
        vote = Vote.UP if name in UP_REACTIONS else Vote.DOWN if name in DOWN_REACTIONS else None
        if vote is None or item.get("type") != "message":
            return
        if context.bot_user_id and event.get("item_user") not in (None, context.bot_user_id):
            return  # a reaction on someone else's message
        channel, user = item.get("channel", ""), event.get("user", "")
        found = self.state.answer_for(channel, item.get("ts", ""))
        if found is None:
            log.debug("reaction on %s/%s: not a known answer", channel, item.get("ts"))
            return
        answer_id, thread_ts = found
        if not self._record(Feedback(answer_id, user, Platform.SLACK, vote)):
            return
        if vote == Vote.DOWN and self.verified is not None:
            self.verified.after_down_vote(self._team({}, context), channel, thread_ts, answer_id)
        try:
            self.client.chat_postEphemeral(
                channel=channel,
                user=user,
                thread_ts=thread_ts or None,
                text=thanks_text(vote),
                blocks=comment_prompt_blocks(answer_id) if vote == Vote.DOWN else None,
            )
        except SlackClientError as exc:
            log.warning("could not thank %s: %s", user, exc)

    def _on_vote(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        answer_id, user = str(action.get("value", "")), body["user"]["id"]
        vote = Vote.UP if action.get("action_id") == ACTION_VOTE_UP else Vote.DOWN
        if vote == Vote.DOWN and body.get("trigger_id"):
            # First: a trigger_id is only good for 3 seconds after the click.
            self._open_modal(body["trigger_id"], answer_id)
        if self._record(Feedback(answer_id, user, Platform.SLACK, vote)):
            self._thank(body, respond, thanks_text(vote))
            if vote == Vote.DOWN and self.verified is not None:
                channel = (body.get("channel") or {}).get("id") or ""
                thread_ts = (body.get("message") or {}).get("thread_ts") or ""
                self.verified.after_down_vote(str((body.get("team") or {}).get("id", "")), channel, thread_ts, answer_id)
        else:
            self._thank(body, respond, "Sorry, I couldn't record your vote. Please try again later.")

    def _on_comment_button(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        self._open_modal(body["trigger_id"], str(action.get("value", "")))

    def _open_modal(self, trigger_id: str, answer_id: str) -> None:
        try:
            self.client.views_open(
                trigger_id=trigger_id, view=feedback_modal(answer_id, json.dumps({"answer_id": answer_id}))
            )
        except SlackClientError as exc:
            log.warning("could not open the feedback modal: %s", exc)

    def _on_feedback_view(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        ack()
        try:
            answer_id = str(json.loads(view.get("private_metadata") or "{}")["answer_id"])
        except (ValueError, KeyError):
            log.warning("feedback modal without an answer id")
            return
        values = (view.get("state") or {}).get("values") or {}
        comment = str(((values.get("comment") or {}).get("comment") or {}).get("value") or "").strip()
        if comment:  # replaces the 👎 vote with the same vote plus its comment
            self._record(Feedback(answer_id, body["user"]["id"], Platform.SLACK, Vote.DOWN, comment))

    def _record(self, feedback: Feedback) -> bool:
        """Store a vote; False (logged) when the store refuses it or is down."""
        try:
            self.answers.record_feedback(feedback)
            return True
        except SupportbotError as exc:
            log.warning("could not record %s vote on %s: %s", feedback.vote, feedback.answer_id, exc)
            return False

    def _thank(self, body: dict[str, Any], respond: Respond, text: str) -> None:
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        try:
            if container.get("is_ephemeral") or not channel:
                respond(text=text, response_type="ephemeral", replace_original=False)
            else:
                thread_ts = (body.get("message") or {}).get("thread_ts")
                self.client.chat_postEphemeral(
                    channel=channel, user=body["user"]["id"], thread_ts=thread_ts, text=text
                )
        except Exception as exc:  # noqa: BLE001 - a lost thank-you is not worth a failure
            log.warning("could not thank the voter: %s", type(exc).__name__)

    # -- /ask and sharing ----------------------------------------------------------------------
    def _on_ask(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        text = clean_text(command.get("text") or "", None)
        if not text:
            ack(text=ASK_USAGE)
            return
        channel, user = command.get("channel_id", ""), command.get("user_id", "")
        limited = self._limited("question", channel, user)
        if limited:
            ack(text=limited)
            return
        ack(text=f":mag: Looking up “{escape(text)}”…")
        try:
            private = channel.startswith("D")
            groups = self.access.groups_for(
                platform="slack", conversation=channel, user=user, private_chat=private,
                directory_groups=self._directory_groups(user, private),
            )
            answer = self.answers.answer(
                Question(text=text, asker=user, platform=Platform.SLACK, conversation=channel, groups=groups)
            )
            message = render_answer(answer, extra_actions=[share_button(answer.id)])[0]
        except Exception:
            log.exception("/ask failed")
            self._respond_quietly(respond, text=FAILURE_TEXT, response_type="ephemeral", replace_original=True)
            return
        # Delivery through the command's response_url is Slack's side: a failure there is one
        # line in the log, not an answering error with a traceback.
        self._respond_quietly(
            respond, text=message.text, blocks=list(message.blocks), response_type="ephemeral", replace_original=True
        )

    @staticmethod
    def _respond_quietly(respond: Respond, **message: Any) -> None:
        try:
            respond(**message)
        except Exception as exc:  # noqa: BLE001 - nothing more we can do; it is logged
            log.error("could not deliver the /ask reply: %s", type(exc).__name__)

    def _on_share(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        answer = self.answers.get_answer(str(action.get("value", "")))
        if answer is None:
            respond(text="That answer is no longer available; please ask again.", replace_original=False)
            return
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
        user = body["user"]["id"]
        audience = self.access.groups_for(
            platform="slack", conversation=channel, user=user, private_chat=channel.startswith("D")
        )
        if not answer.question.groups <= audience:
            # The answer was written with more access than this channel has: sharing could leak.
            respond(text="This answer used sources this channel can't see, so I won't share it here.",
                    replace_original=False)
            return
        try:
            for message in render_answer(answer, shared_by=user):
                ts = self._post(channel, None, message.text, list(message.blocks), metadata(answer.id))
                self.state.remember_answer(channel, ts, answer.id, "")
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("sharing an answer in %s failed: %s", channel, error)
            hint = (
                " Invite me first: `/invite @supportbot`."
                if error in ("not_in_channel", "channel_not_found")
                else ""
            )
            respond(text="I couldn't post in this channel." + hint, replace_original=False)
            return
        respond(delete_original=True)

    # -- /ingest -------------------------------------------------------------------------------
    def _on_ingest(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        target, problem = parse_ingest_target(command.get("text") or "")
        if target is None:
            ack(text=f"{problem}\n{INGEST_USAGE}")
            return
        if self.ingest_queue is None:
            ack(text="Ingest isn't available here: no worker queue is configured.")
            return
        user = command.get("user_id", "")
        if user not in self.admins and not self.admin_group:
            ack(text=REFUSAL_TEXT)
            return
        limited = self._limited("ingest", command.get("channel_id", ""), user)
        if limited:
            ack(text=limited)
            return
        ack(text=f":hourglass_flowing_sand: Ingest of `{escape(target)}` requested…")
        budget = _ResponseBudget(respond, self.client, user, self.clock)
        try:
            if not self._may_ingest(user):
                budget.send(REFUSAL_TEXT, final=True)
                return
            notify = {
                "platform": "slack",
                "team": command.get("team_id", ""),
                "channel": command.get("channel_id", ""),
                "user": user,
                # Not the response_url: it is a capability (anyone holding it can post to the
                # user), and job records are readable on the web page. The poller keeps it.
            }
            job_id = self.ingest_queue.enqueue_ingest(target, f"slack:{user}", notify)
        except Exception:
            log.exception("/ingest %s could not be queued", target)
            budget.send("Sorry, I couldn't queue that ingest. Please try again later.", final=True)
            return
        budget.send(f"Queued the ingest of `{escape(target)}` (job `{job_id}`). I'll report back here.")
        threading.Thread(
            target=self._follow_job,
            args=(job_id, target, budget),
            name=f"slack-ingest-{job_id[:8]}",
            daemon=True,
        ).start()

    def _may_ingest(self, user: str) -> bool:
        if user in self.admins:
            return True
        if not self.admin_group:
            return False
        members = self.client.usergroups_users_list(usergroup=self.admin_group).get("users") or []
        return user in members

    def _follow_job(self, job_id: str, target: str, budget: _ResponseBudget) -> None:
        """Poll the job until it finishes; report progress now and then and the result at the end."""
        assert self.ingest_queue is not None
        deadline = self.clock() + self.ingest_timeout_s
        last_progress = self.clock()
        seen: tuple[object, ...] = ()
        failures = unknown = 0
        while not self._stopping.is_set():
            try:
                status = self.ingest_queue.status(job_id)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a flaky status read is retried, a dead one reported
                failures += 1
                log.warning("status of ingest job %s failed: %s", job_id, type(exc).__name__)
                if failures >= 5:
                    budget.send(
                        f"I lost track of the ingest of `{escape(target)}` (job `{job_id}`).", final=True
                    )
                    return
                self._stopping.wait(self.poll_interval_s)
                continue
            if status.finished:
                budget.send(_result_text(target, status), final=True)
                return
            unknown = unknown + 1 if status.state == "unknown" else 0
            if unknown * self.poll_interval_s > 120:  # the job record never appeared or expired
                budget.send(f"I lost track of the ingest of `{escape(target)}` (job `{job_id}`).", final=True)
                return
            now = self.clock()
            shown = (status.state, status.done, status.total)
            if shown != seen and status.state == "running" and now - last_progress >= self.progress_every_s:
                budget.send(_progress_text(target, status))
                seen, last_progress = shown, now
            if now > deadline:
                budget.send(
                    f"The ingest of `{escape(target)}` is still running (job `{job_id}`).", final=True
                )
                return
            self._stopping.wait(self.poll_interval_s)

    # -- helpers -------------------------------------------------------------------------------
    def _limited(self, kind: str, channel: str, user: str) -> str:
        """The polite refusal when ``user`` or ``channel`` is over its limit, else ""."""
        if self.throttle is None:
            return ""
        try:
            (self.throttle.ingest if kind == "ingest" else self.throttle.question)("slack", user, channel)
        except RateLimited as exc:
            log.info("Slack %s from %s in %s rate limited", kind, user, channel)
            return polite_text(exc, "ingests" if kind == "ingest" else "questions")
        return ""

    def _allowed(self, channel: str, user: str, thread_ts: str) -> bool:
        """Count a question; when over the limit, tell the asker (only them) and return False."""
        limited = self._limited("question", channel, user)
        if not limited:
            return True
        try:
            if channel.startswith("D"):
                self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=limited)
            else:
                self.client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=limited)
        except SlackClientError as exc:
            log.warning("could not tell %s about the rate limit: %s", user, exc)
        return False

    def _directory_groups(self, user: str, private: bool) -> frozenset[str]:
        if self.directory is None or not private or not user:
            return frozenset()  # directory groups only count where nobody else reads the answer
        try:
            return self.directory(user)
        except Exception as exc:  # noqa: BLE001 - without the directory the asker sees less, never more
            log.warning("Slack user groups unavailable (%s); answering without them", type(exc).__name__)
            return frozenset()

    @staticmethod
    def _team(body: dict[str, Any], context: BoltContext) -> str:
        return str(context.team_id or body.get("team_id") or (body.get("event") or {}).get("team") or "")


def _progress_text(target: str, status: JobStatus) -> str:
    count = f"{status.done}/{status.total}" if status.total else str(status.done)
    current = f" (now: {escape(status.current)})" if status.current else ""
    return f"Ingesting `{escape(target)}`: {count} documents done{current}."


def _result_text(target: str, status: JobStatus) -> str:
    if status.state == "done":
        return (
            f":white_check_mark: Ingest of `{escape(target)}` finished: {escape(status.summary or 'done')}."
        )
    return f":x: Ingest of `{escape(target)}` failed: {escape(status.error or 'unknown error')}."


# -- construction from settings -------------------------------------------------------------------
def resolve_mode(settings: Settings) -> str:
    """``socket`` or ``http``: ``auto`` means Socket Mode when an app-level token is set."""
    if settings.slack_mode == "auto":
        return "socket" if settings.slack_app_token is not None else "http"
    return settings.slack_mode


def bot_from_services(
    services: Services,
    *,
    client: WebClient | None = None,
    ingest_queue: IngestQueue | None = None,
    state: SlackState | None = None,
    socket_mode: bool = False,
    **options: Any,
) -> SlackBot:
    """The SlackBot for these services; each collaborator may be injected instead (tests, bench)."""
    s = services.settings
    if client is None:
        if s.slack_bot_token is None:
            raise ConfigError("Slack needs SLACK_BOT_TOKEN")
        client = make_client(s.slack_bot_token.get_secret_value(), s.slack_api_url)
    if not socket_mode and s.slack_signing_secret is None:
        raise ConfigError("Slack HTTP mode needs SLACK_SIGNING_SECRET")
    if ingest_queue is None:
        try:
            ingest_queue = services.ingest_queue  # the Celery implementation of the port
        except ConfigError as exc:
            # Answering works without workers; /ingest then says it isn't available.
            log.warning("Slack /ingest disabled: %s", exc)
    if state is None:
        state = SlackState(None if s.redis_url is None else s.redis_url.get_secret_value())
    options.setdefault("throttle", services.throttle)
    options.setdefault("verified", services.verified)
    if s.slack_usergroup_groups and "directory" not in options:
        from adapters.slack.directory import SlackUserGroups

        options["directory"] = SlackUserGroups(client, s.slack_usergroup_groups)
    return SlackBot(
        answers=services.answers,
        access=services.access,
        client=client,
        signing_secret=None if s.slack_signing_secret is None else s.slack_signing_secret.get_secret_value(),
        state=state,
        ingest_queue=ingest_queue,
        admins=s.slack_admins,
        admin_group=s.slack_admin_group,
        socket_mode=socket_mode,
        **options,
    )
