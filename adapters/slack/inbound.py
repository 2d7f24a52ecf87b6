"""Slack payloads → typed values, parsed once at the edge. Pure (unit-tested).

Listeners turn an event, a slash command or an interaction into one of these and pass
only typed values on: the core's :class:`bot.conversation.ChatMessage`, and the few Slack
facts delivery needs (:class:`SlackEvent`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.conversation import ChatMessage
from bot.types import ChatAddress, Platform, Turn

ANSWERABLE_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})

_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_USERGROUP = re.compile(r"<!subteam\^[A-Z0-9]+(?:\|([^>]*))?>")


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


def command_argument(text: str) -> str:
    """A slash command's argument; Slack may send a link as ``<url>`` or ``<url|label>``."""
    arg = text.strip()
    if arg.startswith("<") and arg.endswith(">"):
        arg = arg[1:-1].split("|", 1)[0]
    return arg


def is_private(channel: str, channel_type: str = "") -> bool:
    """A direct message with the bot: nobody else reads the answer."""
    return channel_type == "im" or channel.startswith("D")


@dataclass(frozen=True)
class SlackEvent:
    """A ``message`` or ``app_mention`` event: what the listeners and delivery need."""

    team: str
    channel: str
    ts: str
    thread_ts: str  # the thread the answer goes to (the message's own ts when it starts one)
    in_thread: bool  # the message is a reply in an existing thread
    user: str
    raw_text: str
    channel_type: str = ""
    subtype: str | None = None
    from_bot: bool = False
    bot_user: str = ""

    @property
    def private(self) -> bool:
        return is_private(self.channel, self.channel_type)

    @property
    def answerable(self) -> bool:
        """A person's message the bot may answer (not an edit, a join, a bot's post)."""
        return self.subtype in ANSWERABLE_SUBTYPES and not self.from_bot and bool(self.user)

    @property
    def mentions_bot(self) -> bool:
        return bool(self.bot_user) and f"<@{self.bot_user}" in self.raw_text

    @property
    def text(self) -> str:
        return clean_text(self.raw_text, self.bot_user or None)

    def chat_message(self, history: tuple[Turn, ...] = ()) -> ChatMessage:
        return ChatMessage(
            platform=Platform.SLACK, asker=self.user, conversation=self.channel, text=self.text,
            private=self.private, thread=self.thread_ts, history=history,
        )


def parse_event(event: dict[str, Any], team: str, bot_user: str | None) -> SlackEvent:
    ts = str(event.get("ts") or "")
    thread_ts = str(event.get("thread_ts") or "")
    return SlackEvent(
        team=team,
        channel=str(event.get("channel") or ""),
        ts=ts,
        thread_ts=thread_ts or ts,
        in_thread=bool(thread_ts) and thread_ts != ts,
        user=str(event.get("user") or ""),
        raw_text=str(event.get("text") or ""),
        channel_type=str(event.get("channel_type") or ""),
        subtype=event.get("subtype"),
        from_bot=bool(event.get("bot_id")),
        bot_user=bot_user or "",
    )


@dataclass(frozen=True)
class SlashCommand:
    """``/ask`` or ``/ingest``."""

    team: str
    channel: str
    user: str
    text: str

    @property
    def private(self) -> bool:
        return is_private(self.channel)

    def chat_message(self, text: str) -> ChatMessage:
        return ChatMessage(
            platform=Platform.SLACK, asker=self.user, conversation=self.channel, text=text, private=self.private
        )

    def address(self) -> ChatAddress:
        """Where the worker reports on a job this command started."""
        return ChatAddress(Platform.SLACK, self.channel, user=self.user, team=self.team)


def parse_command(command: dict[str, Any]) -> SlashCommand:
    return SlashCommand(
        team=str(command.get("team_id") or ""),
        channel=str(command.get("channel_id") or ""),
        user=str(command.get("user_id") or ""),
        text=str(command.get("text") or ""),
    )


@dataclass(frozen=True)
class Interaction:
    """A button click (``block_actions``): who, where, on which message."""

    user: str
    team: str
    channel: str
    thread_ts: str
    value: str
    action_id: str
    trigger_id: str
    ephemeral: bool


def parse_action(body: dict[str, Any], action: dict[str, Any]) -> Interaction:
    container = body.get("container") or {}
    return Interaction(
        user=str((body.get("user") or {}).get("id") or ""),
        team=str((body.get("team") or {}).get("id") or ""),
        channel=str((body.get("channel") or {}).get("id") or container.get("channel_id") or ""),
        thread_ts=str((body.get("message") or {}).get("thread_ts") or ""),
        value=str(action.get("value") or ""),
        action_id=str(action.get("action_id") or ""),
        trigger_id=str(body.get("trigger_id") or ""),
        ephemeral=bool(container.get("is_ephemeral")),
    )
