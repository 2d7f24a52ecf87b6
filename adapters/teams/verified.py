"""Teams' side of verified answers: the "Answer this" card under a decline, and its card action
parsed into a core call (``bot.verified.VerifiedService.mark``). Pure rendering and parsing:
who may mark, what is kept and every sentence shown come from the core.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from adapters.teams.activity import Incoming
from bot.types import Platform
from bot.verified import (
    ANSWER_THIS_LABEL,
    USE_AS_ANSWER_LABEL,
    ExpertReply,
    answer_this_prompt,
)

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
VERIFIED_VERB = "supportbot.verified"
INPUT_ID = "answer"


def answer_this_activity(answer_id: str) -> dict[str, Any]:
    """A message under a decline: "Answer this" opens a text box; "Use as answer" sends it."""
    data = {"supportbot": "verified", "answer_id": answer_id}
    submit = {
        "type": "Action.Execute",
        "title": USE_AS_ANSWER_LABEL,
        "verb": VERIFIED_VERB,
        "data": data,
        "fallback": {"type": "Action.Submit", "title": USE_AS_ANSWER_LABEL, "data": data},
    }
    form = {
        "type": "AdaptiveCard",
        "body": [
            {
                "type": "Input.Text",
                "id": INPUT_ID,
                "isMultiline": True,
                "maxLength": 20000,
                "placeholder": "The answer, as you would tell a colleague (Markdown works)",
                "label": "Your answer",
                "isRequired": True,
                "errorMessage": "Write the answer first.",
            }
        ],
        "actions": [submit],
    }
    card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": [{"type": "TextBlock", "text": answer_this_prompt(Platform.TEAMS), "wrap": True, "size": "Small"}],
        "actions": [{"type": "Action.ShowCard", "title": ANSWER_THIS_LABEL, "card": form}],
    }
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card}]}


def thread_link(conversation_id: str) -> str:
    """A Teams deep link to a channel thread (``19:...;messageid=<root>``), or "" elsewhere."""
    channel, _, root = conversation_id.partition(";messageid=")
    if not root or not channel.startswith("19:"):
        return ""
    return f"https://teams.microsoft.com/l/message/{quote(channel, safe='')}/{quote(root)}?parentMessageId={quote(root)}"


def reply_from_card(inc: Incoming, data: dict[str, Any]) -> ExpertReply:
    """The card action as the core's ExpertReply: the expert typed the answer into the card."""
    _, _, root = inc.conversation_id.partition(";messageid=")
    return ExpertReply(
        platform=Platform.TEAMS,
        conversation=inc.conversation_id,
        thread=root or inc.reply_to_id,
        message_id=inc.id or f"{inc.reply_to_id}:{inc.voter}",
        author=inc.voter,
        author_name=inc.user_name or inc.voter,
        text=str(data.get(INPUT_ID) or ""),
        url=thread_link(inc.conversation_id),
        scopes=(inc.team_id,) if inc.team_id else (),
        answer_id=str(data.get("answer_id") or ""),
    )
