"""Answers → Teams wire activities with an Adaptive Card. Pure: no I/O, no botbuilder.

The card shows the answer text (fenced code blocks as ``CodeBlock`` elements), numbered sources as links with their update age, and
👍/👎 actions. The vote actions are ``Action.Execute`` (Universal Actions: Teams answers
the user privately) with an ``Action.Submit`` fallback for clients without them; both carry
the answer id, so the vote is recorded against the stored answer whichever path is taken.
Replies also set ``channelData.feedbackLoopEnabled`` so Teams' own feedback buttons appear.
"""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from typing import Any

from bot.links import Link, replace_links, safe_link
from bot.types import Answer, Citation, Decision

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
FEEDBACK_VERB = "supportbot.feedback"
_MAX_TEXT = 20_000  # Teams rejects activities over ~28 KB; leave room for the sources
_AI_ENTITY = {
    "type": "https://schema.org/Message",
    "@type": "Message",
    "@context": "https://schema.org",
    "additionalType": ["AIGeneratedContent"],
}


def age(updated: datetime | None, now: datetime) -> str:
    """A short, human update age: ``updated today``, ``updated 3 days ago``, ``updated 2 years ago``."""
    if updated is None:
        return ""
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    days = max(0, (now - updated).days)
    if days == 0:
        return "updated today"
    for size, unit in ((365, "year"), (30, "month"), (7, "week"), (1, "day")):
        if days >= size:
            n = days // size
            return f"updated {n} {unit}{'s' if n > 1 else ''} ago"
    return "updated today"  # pragma: no cover - unreachable, keeps mypy happy


def _escape(text: str) -> str:
    # Adaptive Card markdown would turn [..](..) in a title into a link; titles are data.
    return text.replace("[", "\\[").replace("]", "\\]")


def honest_link(link: Link) -> str:
    """A document's link (``bot.links``) in card markdown: ``[text](url) (host)``, or the text alone."""
    text = _escape(link.text)
    if not link.url:
        return text
    return f"[{text}]({_escape_url(link.url)}) ({_escape(link.host)})"


def _escape_url(url: str) -> str:
    # A ')' or a space would end the markdown link early.
    return url.replace(" ", "%20").replace(")", "%29").replace("(", "%28")


def honest_text(text: str) -> str:
    """Answer text for a card or a markdown message: its Markdown links made honest, host beside."""
    return replace_links(text, honest_link)


def citation_line(c: Citation, now: datetime) -> str:
    """``1. [Title › Heading](url) (host) · updated 3 days ago`` (Adaptive Card markdown).

    The title comes from the document: made honest (``bot.links``), the target's host beside
    it; a source without a web URL (a file on the server) shows its title only, never its path.
    """
    parts = [c.title, *(h for h in c.heading_path if h and h != c.title)]
    label = " › ".join(p for p in parts if p) or "untitled"
    link = honest_link(safe_link(label, c.url))
    when = age(c.updated_at, now)
    return f"{c.number}. {link}" + (f" · {when}" if when else "")


_FENCED = re.compile(r"^[ \t]*(```+|~~~+)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.S | re.M)
_ESCAPED_HASH = re.compile(r"^\\#", re.MULTILINE)


def _prose(text: str) -> str:
    """Prose for a TextBlock: links made honest; a ``\\#`` the loader escaped at a line start
    ("\\# of seats", page text that only looked like a heading) shown as ``#`` (TextBlock
    markdown has no headings and no backslash escapes)."""
    return _ESCAPED_HASH.sub("#", honest_text(text))


def text_elements(text: str) -> list[dict[str, Any]]:
    """The answer text as card elements: Markdown in TextBlocks (lists and bold render there; links
    made honest, :func:`honest_text`),
    each fenced code block as a Teams ``CodeBlock`` (a monospace TextBlock where unsupported),
    since TextBlock markdown has no code blocks."""
    elements: list[dict[str, Any]] = []
    at = 0
    for match in _FENCED.finditer(text):
        before = text[at : match.start()].strip()
        if before:
            elements.append({"type": "TextBlock", "text": _prose(before), "wrap": True})
        code = textwrap.dedent(match.group(2)).rstrip("\n")
        elements.append(
            {
                "type": "CodeBlock",
                "codeSnippet": code,
                "language": "PlainText",
                "fallback": {"type": "TextBlock", "text": code, "fontType": "Monospace", "wrap": True},
            }
        )
        at = match.end()
    rest = text[at:].strip()
    if rest or not elements:
        elements.append({"type": "TextBlock", "text": _prose(rest), "wrap": True})
    return elements


def _vote_action(answer_id: str, vote: str, title: str) -> dict[str, Any]:
    data = {"supportbot": "feedback", "answer_id": answer_id, "vote": vote}
    return {
        "type": "Action.Execute",
        "title": title,
        "verb": FEEDBACK_VERB,
        "data": data,
        "fallback": {"type": "Action.Submit", "title": title, "data": data},
    }


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def answer_card(answer: Answer, now: datetime | None = None, *, with_text: bool = True) -> dict[str, Any]:
    """The Adaptive Card (1.5) for an answer or a decline.

    ``with_text=False`` leaves the answer text out, for a message that carries it as its
    own text (the end of a Teams stream).
    """
    now = now or datetime.now(UTC)
    body: list[dict[str, Any]] = []
    if with_text:
        body.extend(text_elements(_clip(answer.text)))
    if answer.note:
        body.append({"type": "TextBlock", "text": answer.note, "wrap": True, "isSubtle": True, "size": "Small"})
    if answer.citations:
        heading = "Sources" if answer.decision == Decision.ANSWERED else "Closest sources"
        body.append({"type": "TextBlock", "text": heading, "weight": "Bolder", "size": "Small", "spacing": "Medium"})
        body.extend(
            {"type": "TextBlock", "text": citation_line(c, now), "wrap": True, "size": "Small", "spacing": "None"}
            for c in answer.citations
        )
    if answer.see_also:
        body.append({"type": "TextBlock", "text": "See also", "weight": "Bolder", "size": "Small", "spacing": "Medium"})
        body.extend(
            {"type": "TextBlock", "text": "- " + citation_line(c, now).split(". ", 1)[1], "wrap": True, "size": "Small", "spacing": "None"}
            for c in answer.see_also
        )
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
        "actions": [
            _vote_action(answer.id, "up", "👍 Helpful"),
            _vote_action(answer.id, "down", "👎 Not helpful"),
        ],
    }


def _summary(text: str) -> str:
    return text if len(text) <= 120 else text[:119] + "…"


def answer_activity(answer: Answer, now: datetime | None = None, *, with_text: bool = True) -> dict[str, Any]:
    """A message activity carrying the answer card, with Teams' feedback loop switched on."""
    card = answer_card(answer, now, with_text=with_text)
    activity: dict[str, Any] = {
        "type": "message",
        # ``summary`` is what notifications and the chat list show; ``text`` stays empty so
        # Teams does not print the answer twice above the card.
        "summary": _summary(replace_links(answer.text, lambda link: link.text)),
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card}],
        "channelData": {"feedbackLoopEnabled": True},
    }
    if answer.decision == Decision.ANSWERED:
        activity["entities"] = [dict(_AI_ENTITY)]
    return activity


def text_activity(text: str) -> dict[str, Any]:
    """A plain message."""
    return {"type": "message", "text": text, "textFormat": "markdown"}


def typing_activity() -> dict[str, Any]:
    """The typing indicator sent as soon as a question arrives."""
    return {"type": "typing"}


def _stream_info(stream_type: str, sequence: int | None, stream_id: str) -> dict[str, Any]:
    info: dict[str, Any] = {"type": "streaminfo", "streamType": stream_type}
    if sequence is not None:
        info["streamSequence"] = sequence
    if stream_id:
        info["streamId"] = stream_id
    return info


def stream_chunk(text: str, sequence: int, stream_id: str) -> dict[str, Any]:
    """A Teams streaming update (personal chats): a typing activity carrying the text so far."""
    info = _stream_info("streaming", sequence, stream_id)
    channel_data = {k: v for k, v in info.items() if k != "type"}
    return {"type": "typing", "text": honest_text(text), "entities": [info], "channelData": channel_data}


def stream_final(answer: Answer, stream_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The message that ends a Teams stream: the answer card replaces the streamed text."""
    activity = answer_activity(answer, now, with_text=False)
    info = _stream_info("final", None, stream_id)
    activity["entities"] = [info, *activity.get("entities", [])]
    activity["channelData"] = {**activity["channelData"], "streamType": "final", "streamId": stream_id}
    # The final message carries the (checked) text itself, replacing what was streamed;
    # the card below it holds the sources and the vote buttons.
    activity["text"] = _clip(honest_text(answer.text))
    activity["textFormat"] = "markdown"
    return activity


def partial_activity(text: str) -> dict[str, Any]:
    """The growing answer in a channel or group chat, before the final card replaces it."""
    return {"type": "message", "text": honest_text(text) + " …", "textFormat": "markdown"}
