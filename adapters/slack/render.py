"""Answer → Block Kit. Pure functions: no I/O, no clock unless one is passed in.

Slack limits honoured here: at most 50 blocks a message and 3,000 characters a section
text; every message carries fallback ``text`` (notifications, screen readers, old
clients). User-supplied text is escaped (``&``, ``<``, ``>``) so it can never become a
mention, a channel ping or a link it did not spell out.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from bot import messages
from bot.links import Link, replace_links, safe_link
from bot.types import Answer, Citation, Decision, Vote

Block = dict[str, Any]

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_FALLBACK_CHARS = 3000  # Slack accepts 40,000, but notifications only show the start

ACTION_VOTE_UP = "supportbot_vote_up"
ACTION_VOTE_DOWN = "supportbot_vote_down"
ACTION_SHARE = "supportbot_share"
ACTION_COMMENT = "supportbot_comment"
VIEW_FEEDBACK = "supportbot_feedback"
METADATA_EVENT = "supportbot_answer"

_CITE = re.compile(r"\[(\d+)\]")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)
_ESCAPED_HASH = re.compile(r"^\\#", re.MULTILINE)
_BULLET = re.compile(r"^[ \t]*[-*][ \t]+", re.MULTILINE)
_CODE = re.compile(r"(^[ \t]*(?:```+|~~~+)[^\n]*\n.*?^[ \t]*(?:```+|~~~+)[ \t]*$|`[^`\n]+`)", re.S | re.M)
_FENCE_LINE = re.compile(r"^[ \t]*(?:```+|~~~+)[ \t]*$")


@dataclass(frozen=True)
class SlackMessage:
    """One chat message: fallback ``text`` and its ``blocks`` (at most 50)."""

    text: str
    blocks: tuple[Block, ...]


def escape(text: str) -> str:
    """Escape the three characters Slack treats as markup in mrkdwn and fallback text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _safe_url(url: str) -> str | None:
    """The URL if it can be a Slack link (http/https with a host), made safe inside ``<...|...>``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    # '|' and '>' would end the link early; '<' and whitespace would break it.
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~-._")


def _label(text: str) -> str:
    return escape(text).replace("|", "¦")


def link(url: str, label: str) -> str:
    """A mrkdwn link ``<url|label>``, or just the escaped label when the URL can't be linked."""
    safe = _safe_url(url)
    return f"<{safe}|{_label(label)}>" if safe else _label(label)


def honest_link(link_: Link) -> str:
    """A document's link (``bot.links``): ``<url|text> (host)``, or the text alone when not a link."""
    if not link_.url:
        return _label(link_.text)
    return f"{link(link_.url, link_.text)} ({escape(link_.host)})"


def to_mrkdwn(text: str, citations: Sequence[Citation] = ()) -> str:
    """Convert the answer's small Markdown subset to Slack mrkdwn, escaping user text first.

    ``**bold**`` → ``*bold*``, ``[label](url)`` → ``<url|label> (host)`` (made honest by
    ``bot.links``: a label naming another host shows the target instead), ``# heading`` → bold
    line, ``- item`` → ``• item``; a citation ``[n]`` becomes a link to source n when it has a web
    URL; a fenced code block becomes a Slack ``` block and inline `code` stays code.
    """
    by_number = {c.number: c for c in citations}

    def cite(match: re.Match[str]) -> str:
        c = by_number.get(int(match.group(1)))
        safe = _safe_url(c.url) if c else None
        return f"<{safe}|[{match.group(1)}]>" if safe else match.group(0)

    def prose(part: str) -> str:
        # Links first, on the raw text (honest_link escapes what it emits); then the rest is escaped.
        pieces: list[str] = []
        last = 0
        for m in _MD_LINK.finditer(part):
            pieces.append(escape(part[last : m.start()]))
            pieces.append(replace_links(m.group(0), honest_link))
            last = m.end()
        pieces.append(escape(part[last:]))
        out = "".join(pieces)
        out = _BOLD.sub(r"*\1*", out)
        out = _HEADING.sub(r"*\1*", out)
        out = _ESCAPED_HASH.sub("#", out)  # "\# of seats": page text that only looked like a heading
        out = _BULLET.sub("• ", out)
        return _CITE.sub(cite, out)

    # Code is shown as code: a fenced block as a ``` block (its "# comment" lines are not
    # headings, its "- x" lines not bullets), `inline` as it is; only escaped.
    parts = _CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(prose(part))
        elif part.startswith("`") and not part.startswith("```"):
            out.append(escape(part))
        else:
            out.append(_code_block(part))
    return "".join(out)


def _code_block(fenced: str) -> str:
    """A fenced Markdown block (``` or ~~~, maybe indented, maybe with a language) as Slack's ```."""
    lines = fenced.split("\n")
    body = lines[1:-1] if len(lines) > 1 and _FENCE_LINE.match(lines[-1]) else lines[1:]
    code = textwrap.dedent("\n".join(body)).strip("\n")
    return f"```\n{escape(code)}\n```"


def ago(when: datetime | None, now: datetime) -> str:
    """How long ago ``when`` was, in words ("3 days ago"); empty when unknown."""
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (now - when).total_seconds()
    if seconds < 60:
        return "just now"
    for size, unit in (
        (31_536_000, "year"),
        (2_592_000, "month"),
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
    ):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"  # pragma: no cover - the loop always returns for seconds >= 60


def split_text(text: str, limit: int = MAX_SECTION_CHARS) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters, at the gentlest boundary
    available (paragraph, line, sentence, word), never inside a ``<...>`` link."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = -1
        for sep in ("\n\n", "\n", ". ", " "):
            at = window.rfind(sep)
            while at > 0 and (_inside_link(window, at) or window.count("```", 0, at) % 2):
                at = window.rfind(sep, 0, at)
            if at > limit // 4:
                cut = at + 1 if sep == ". " else at
                break
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _inside_link(text: str, at: int) -> bool:
    return text.rfind("<", 0, at) > text.rfind(">", 0, at)


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _button(text: str, action_id: str, value: str, label: str, style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "value": value,
        "accessibility_label": label,
    }
    if style:
        button["style"] = style
    return button


def feedback_buttons(answer_id: str) -> list[Block]:
    """The 👍 Helpful / 👎 Not helpful buttons (words too: where no emoji font is installed the
    emoji alone shows as an empty box); the value carries the stored answer id back to us."""
    return [
        _button("👍 Helpful", ACTION_VOTE_UP, answer_id, "This answer helped"),
        _button("👎 Not helpful", ACTION_VOTE_DOWN, answer_id, "This answer did not help"),
    ]


def share_button(answer_id: str) -> Block:
    """The "Share in channel" button under a private (/ask) answer."""
    return _button("Share in channel", ACTION_SHARE, answer_id, "Post this answer to the channel", "primary")


def source_lines(citations: Sequence[Citation], now: datetime) -> list[str]:
    """Numbered source lines: ``1. <url|title> (host) · heading · updated 3 days ago``.

    The title comes from the document, so it is made honest (``bot.links``) and the target's
    host shows beside it; a source without a web URL (a file on the server) shows its title only.
    """
    lines = []
    for c in citations:
        parts = [f"{c.number}. {honest_link(safe_link(c.title or 'untitled', c.url))}"]
        heading = " > ".join(h for h in c.heading_path if h and h != c.title)
        if heading:
            parts.append(_label(heading))
        when = ago(c.updated_at, now)
        if when:
            parts.append(f"updated {when}")
        lines.append(" · ".join(parts))
    return lines


def answer_blocks(
    answer: Answer,
    now: datetime | None = None,
    *,
    feedback: bool = True,
    shared_by: str | None = None,
    extra_actions: Sequence[Block] = (),
) -> list[Block]:
    """Every block of an answer, before it is split into messages of at most 50 blocks."""
    now = now or datetime.now(UTC)
    blocks: list[Block] = []
    if shared_by:
        blocks.append(_context(f"Shared by <@{shared_by}>"))
    blocks += [_section(piece) for piece in split_text(to_mrkdwn(answer.text, answer.citations))]
    if answer.note:
        blocks.append(_context(f"_{escape(answer.note)}_"))
    if answer.citations:
        heading = "*Sources*" if answer.decision == Decision.ANSWERED else "*Closest sources*"
        blocks += [
            _section(piece)
            for piece in split_text(heading + "\n" + "\n".join(source_lines(answer.citations, now)))
        ]
    if answer.see_also:
        lines = [f"• {link(c.url, c.title or c.url or 'untitled')}" for c in answer.see_also]
        blocks += [_section(piece) for piece in split_text("*See also*\n" + "\n".join(lines))]
    actions = [*(feedback_buttons(answer.id) if feedback else []), *extra_actions]
    if actions:
        blocks.append(
            {"type": "actions", "block_id": f"supportbot_actions_{answer.id[:16]}", "elements": actions}
        )
    return blocks


def fallback_text(answer: Answer) -> str:
    """Plain fallback text: the answer, then its sources, cut to a notification's length."""
    lines = [replace_links(answer.text, lambda link_: link_.text)]  # the honest link text (bot.links)
    if answer.citations:
        lines.append(
            "Sources: " + "; ".join(f"[{c.number}] {safe_link(c.title, c.url).text}" for c in answer.citations)
        )
    text = escape("\n".join(lines))
    return text if len(text) <= MAX_FALLBACK_CHARS else text[: MAX_FALLBACK_CHARS - 1] + "…"


def render_answer(
    answer: Answer,
    now: datetime | None = None,
    *,
    feedback: bool = True,
    shared_by: str | None = None,
    extra_actions: Sequence[Block] = (),
) -> list[SlackMessage]:
    """The messages that carry ``answer``: usually one; more when it needs over 50 blocks.

    The buttons sit on the last message (under the sources); every message has fallback text.
    """
    blocks = answer_blocks(answer, now, feedback=feedback, shared_by=shared_by, extra_actions=extra_actions)
    pages = [blocks[i : i + MAX_BLOCKS] for i in range(0, len(blocks), MAX_BLOCKS)] or [[]]
    fallback = fallback_text(answer)
    messages = []
    for i, page in enumerate(pages):
        text = fallback if i == 0 else f"(continued {i + 1}/{len(pages)})"
        messages.append(SlackMessage(text, tuple(page)))
    return messages


def partial_text(text: str) -> str:
    """What a message shows while the answer is still being written."""
    body = escape(text.strip())
    if len(body) > MAX_SECTION_CHARS - 10:
        body = body[-(MAX_SECTION_CHARS - 10) :]
    return (body + " …") if body else "…"


def metadata(answer_id: str) -> dict[str, Any]:
    """Message metadata naming the answer, so a message can be traced back to its stored Answer."""
    return {"event_type": METADATA_EVENT, "event_payload": {"answer_id": answer_id}}


def thanks_text(vote: Vote) -> str:
    """The ephemeral thank-you after a vote (``bot.messages.thanks``, with Slack's emoji)."""
    text = messages.thanks(vote)
    return f"{text} :+1:" if vote == Vote.UP else text


def comment_prompt_blocks(answer_id: str) -> list[Block]:
    """The thank-you after a 👎 reaction, with a button that opens the "what was wrong" modal
    (a reaction brings no trigger_id, so the modal can only open from a click)."""
    return [
        _section(thanks_text(Vote.DOWN)),
        {
            "type": "actions",
            "elements": [_button("Tell us what was wrong", ACTION_COMMENT, answer_id, "Say what was wrong")],
        },
    ]


def feedback_modal(answer_id: str, private_metadata: str) -> Block:
    """The optional "what was wrong?" modal opened after a 👎."""
    return {
        "type": "modal",
        "callback_id": VIEW_FEEDBACK,
        "private_metadata": private_metadata,
        "title": {"type": "plain_text", "text": "What was wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Skip"},
        "blocks": [
            {
                "type": "input",
                "block_id": "comment",
                "optional": True,
                "label": {"type": "plain_text", "text": "Tell us what was wrong or missing (optional)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "comment",
                    "multiline": True,
                    "max_length": 2000,
                },
            }
        ],
    }
