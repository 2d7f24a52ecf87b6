"""Slack's side of verified answers: parse the ✅ reaction, the "Use as answer" message shortcut and
the "Answer this" button into core calls (``bot.verified.VerifiedService``), and render the results.

What counts (who is an expert, which thread needs an answer, what the verified answer holds,
every sentence said) is decided in the core; this module only reads Slack and posts.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, BoltContext
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.types import Answer, Platform
from bot.verified import (
    ANSWER_THIS_LABEL,
    CHECK_REACTIONS,
    FAILED_TEXT,
    NOT_EXPERT_TEXT,
    ExpertReply,
    MarkResult,
    VerifiedService,
    answer_this_prompt,
)

if TYPE_CHECKING:
    from adapters.slack.app import SlackBot

log = logging.getLogger(__name__)

ACTION_ANSWER_THIS = "supportbot_answer_this"
SHORTCUT_USE_AS_ANSWER = "supportbot_use_as_answer"

_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)\|([^>]*)>")
_BARE_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)>")
_USER = re.compile(r"<@([A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
_BULLET = re.compile(r"^(\s*)[•◦▪]\s+", re.MULTILINE)


def to_markdown(mrkdwn: str) -> str:
    """A Slack message's mrkdwn as the small Markdown subset answers use, keeping its formatting:
    ``*bold*`` → ``**bold**``, ``<url|label>`` → ``[label](url)``, ``• item`` → ``- item``; code
    spans and blocks, italics and line breaks stay as they are."""
    pieces = re.split(r"(```.*?```|`[^`\n]*`)", mrkdwn, flags=re.DOTALL)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            piece = _LINK.sub(lambda m: f"[{m.group(2)}]({m.group(1)})", piece)
            piece = _BARE_LINK.sub(r"\1", piece)
            piece = _USER.sub(lambda m: "@" + (m.group(2) or m.group(1)), piece)
            piece = _CHANNEL.sub(r"#\1", piece)
            piece = re.sub(r"<!(here|channel|everyone)(?:\|[^>]*)?>", r"@\1", piece)
            piece = _BOLD.sub(r"**\1**", piece)
            piece = _BULLET.sub(r"\1- ", piece)
        out.append(piece.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    return "".join(out).strip()


def answer_this_button(answer_id: str) -> dict[str, Any]:
    """The "Answer this" button under a decline."""
    return {
        "type": "button",
        "action_id": ACTION_ANSWER_THIS,
        "text": {"type": "plain_text", "text": ANSWER_THIS_LABEL, "emoji": True},
        "value": answer_id,
        "accessibility_label": "Answer this question for the knowledge base",
    }


class SlackVerified:
    """The verified-answer listeners of one SlackBot (registered by it)."""

    def __init__(self, bot: SlackBot, service: VerifiedService) -> None:
        self.bot = bot
        self.service = service

    def register(self, app: Any) -> None:
        # Before the vote listener for reaction_added: bolt runs the first listener that matches.
        app.event("reaction_added", matchers=[_is_check])(self.on_check)
        app.action(ACTION_ANSWER_THIS)(self.on_answer_this)
        app.shortcut(SHORTCUT_USE_AS_ANSWER)(self.on_shortcut)

    # -- what the answer shows ----------------------------------------------------------------
    def extra_actions(self, answer: Answer) -> list[dict[str, Any]]:
        private = answer.question.conversation.startswith("D")
        return [answer_this_button(answer.id)] if self.service.offers_answer_this(answer, private_chat=private) else []

    def awaits_expert(self, channel: str, thread_ts: str, user: str) -> bool:
        """A reply in a thread that waits for an expert, from an expert: the answer, not a question."""
        try:
            if not self.service.is_expert(Platform.SLACK, channel, user, admin=self.bot.is_listed_admin(user)):
                return False
            return self.service.awaits_answer(Platform.SLACK, channel, thread_ts)
        except Exception as exc:  # noqa: BLE001 - when unsure, answer the message as before
            log.warning("could not check for an expert reply: %s", type(exc).__name__)
            return False

    def after_down_vote(self, team: str, channel: str, thread_ts: str, answer_id: str) -> None:
        """After a 👎 on an answer in a channel thread, invite the experts to answer (once per answer)."""
        if not thread_ts or channel.startswith("D") or not self.bot.state.claim(team, channel, f"answer-this:{answer_id}"):
            return
        prompt = answer_this_prompt(Platform.SLACK)
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": prompt}},
            {"type": "actions", "elements": [answer_this_button(answer_id)]},
        ]
        try:
            self.bot.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=prompt, blocks=blocks)
        except SlackClientError as exc:
            log.warning("could not offer 'Answer this' after a 👎: %s", exc)

    # -- listeners ----------------------------------------------------------------------------
    def on_check(self, event: dict[str, Any], context: BoltContext) -> None:
        item = event.get("item") or {}
        if item.get("type") != "message":
            return
        channel, ts, marker = str(item.get("channel", "")), str(item.get("ts", "")), str(event.get("user", ""))
        author = str(event.get("item_user", ""))
        if not author or author == context.bot_user_id:
            return  # a ✅ on the bot's own message is not an expert's answer
        if not self.service.is_expert(Platform.SLACK, channel, marker, admin=self._admin(marker)):
            log.info("✅ by %s in %s: not an expert here, ignored", marker, channel)
            return  # a non-expert's ✅ does nothing
        message = self._message(channel, ts)
        if message is None:
            return
        result = self._mark(channel, message, marker)
        if result is not None and not result.ok:
            self._tell(channel, marker, str(message.get("thread_ts") or ""), result.text)

    def on_shortcut(self, ack: Ack, body: dict[str, Any]) -> None:
        ack()
        channel = str((body.get("channel") or {}).get("id", ""))
        marker = str((body.get("user") or {}).get("id", ""))
        message = body.get("message") or {}
        result = self._mark(channel, message, marker)
        if result is None:
            self._tell(channel, marker, str(message.get("thread_ts") or ""),
                       "Use this on a reply in a thread where I couldn't answer.")
        elif not result.ok:
            self._tell(channel, marker, str(message.get("thread_ts") or ""), result.text)

    def on_answer_this(self, ack: Ack, body: dict[str, Any]) -> None:
        ack()
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", ""))
        user = str((body.get("user") or {}).get("id", ""))
        thread_ts = str((body.get("message") or {}).get("thread_ts") or "")
        text = self.service.answer_this(Platform.SLACK, channel, user, admin=self._admin(user))
        self._tell(channel, user, thread_ts, text)

    # -- helpers ------------------------------------------------------------------------------
    def _mark(self, channel: str, message: dict[str, Any], marker: str) -> MarkResult | None:
        """Mark a thread reply; ``None`` when the message is not a reply in a thread."""
        ts, thread_ts = str(message.get("ts", "")), str(message.get("thread_ts") or "")
        if not thread_ts or thread_ts == ts or message.get("bot_id"):
            return None
        author = str(message.get("user", ""))
        reply = ExpertReply(
            platform=Platform.SLACK,
            conversation=channel,
            thread=thread_ts,
            message_id=ts,
            author=author,
            author_name=self._name(author),
            text=to_markdown(str(message.get("text") or "")),
            url=self._permalink(channel, ts),
        )
        try:
            result = self.service.mark(reply, marker, marker_is_admin=self._admin(marker))
        except Exception:  # noqa: BLE001 - tell the marker; the thread stays as it was
            log.exception("marking %s/%s as the answer failed", channel, ts)
            return MarkResult(False, FAILED_TEXT)
        if result.ok:
            try:
                self.bot.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=result.text)
            except SlackClientError as exc:
                log.warning("could not announce the verified answer: %s", exc)
        return result

    def _message(self, channel: str, ts: str) -> dict[str, Any] | None:
        try:
            reply = self.bot.client.conversations_replies(channel=channel, ts=ts, limit=200)
        except SlackApiError as exc:
            log.warning("conversations.replies failed (%s); ✅ ignored", exc.response.get("error"))
            return None
        return next((m for m in reply.get("messages") or [] if str(m.get("ts")) == ts), None)

    def _name(self, user: str) -> str:
        try:
            info = self.bot.client.users_info(user=user).get("user") or {}
        except SlackClientError:
            return user
        profile = info.get("profile") or {}
        return str(profile.get("display_name") or info.get("name") or profile.get("real_name") or user)

    def _permalink(self, channel: str, ts: str) -> str:
        try:
            return str(self.bot.client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink") or "")
        except SlackClientError:
            return ""

    def _admin(self, user: str) -> bool:
        return self.bot.is_admin(user)  # the bot's admins: listed, or in the admin user group

    def _tell(self, channel: str, user: str, thread_ts: str, text: str) -> None:
        try:
            self.bot.client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts or None, text=text)
        except SlackClientError as exc:
            log.warning("could not tell %s: %s", user, exc)


def _is_check(event: dict[str, Any]) -> bool:
    return str(event.get("reaction", "")).split("::", 1)[0] in CHECK_REACTIONS


__all__ = ["ACTION_ANSWER_THIS", "NOT_EXPERT_TEXT", "SHORTCUT_USE_AS_ANSWER", "SlackVerified", "to_markdown"]
