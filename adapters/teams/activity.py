"""Incoming Teams activities (wire format) → the few typed facts the bot acts on. Pure."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.teams.protocol import WireActivity

_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Incoming:
    """What the bot needs to know about one incoming activity."""

    type: str
    id: str
    name: str  # invoke name, e.g. "message/submitAction"
    text: str  # the message text with the bot's @mention removed, plain
    value: Mapping[str, Any] | None
    conversation_id: str
    conversation_type: str  # personal | channel | groupChat (the emulator sends none: personal)
    user_id: str  # the channel's user id (29:...)
    user_aad: str  # Azure AD object id, "" when the channel does not send one
    user_name: str
    bot_id: str
    reply_to_id: str
    mentions_bot: bool
    channel_id: str  # Teams channel id (channels only)
    team_id: str  # Teams team id (channels only)
    reactions_added: tuple[str, ...] = ()

    @property
    def personal(self) -> bool:
        return self.conversation_type in ("", "personal")

    @property
    def voter(self) -> str:
        """A stable id for one vote per user: the AAD object id when Teams sends it."""
        return self.user_aad or self.user_id

    @property
    def access_conversation(self) -> str:
        """The conversation id without the thread suffix Teams adds in channels."""
        return self.channel_id or self.conversation_id.split(";", 1)[0]


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def plain_text(text: str) -> str:
    """Teams may send a little HTML (``<p>``, ``&nbsp;``): reduce it to plain, single-spaced text."""
    return _SPACES.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def strip_bot_mention(text: str, entities: object, bot_id: str) -> tuple[str, bool]:
    """Remove the bot's ``<at>Name</at>`` mention(s) from ``text``; report whether there was one."""
    mentioned = False
    for entity in entities if isinstance(entities, list) else []:
        entity = _map(entity)
        if entity.get("type") != "mention":
            continue
        who = _map(entity.get("mentioned"))
        if bot_id and _str(who.get("id")) != bot_id:
            continue
        mentioned = True
        tag = _str(entity.get("text"))
        if tag:
            text = text.replace(tag, " ")
    # Other people's mentions keep their names; plain_text drops the <at> tags around them.
    return plain_text(text), mentioned


def parse(activity: WireActivity) -> Incoming:
    """The facts of one wire activity; missing fields become empty strings, never errors."""
    conversation = _map(activity.get("conversation"))
    sender = _map(activity.get("from"))
    recipient = _map(activity.get("recipient"))
    channel_data = _map(activity.get("channelData"))
    bot_id = _str(recipient.get("id"))
    text, mentioned = strip_bot_mention(_str(activity.get("text")), activity.get("entities"), bot_id)
    value = activity.get("value")
    reactions = tuple(
        _str(_map(r).get("type")) for r in activity.get("reactionsAdded") or () if _str(_map(r).get("type"))
    )
    return Incoming(
        type=_str(activity.get("type")),
        id=_str(activity.get("id")),
        name=_str(activity.get("name")),
        text=text,
        value=value if isinstance(value, Mapping) else None,
        conversation_id=_str(conversation.get("id")),
        conversation_type=_str(conversation.get("conversationType")),
        user_id=_str(sender.get("id")),
        user_aad=_str(sender.get("aadObjectId")),
        user_name=_str(sender.get("name")),
        bot_id=bot_id,
        reply_to_id=_str(activity.get("replyToId")),
        mentions_bot=mentioned,
        channel_id=_str(_map(channel_data.get("channel")).get("id")),
        team_id=_str(_map(channel_data.get("team")).get("id")),
        reactions_added=reactions,
    )
