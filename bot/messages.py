"""Every sentence the bot says in chat, for Slack and Teams alike.

The chat adapters never write their own: they render these (Slack escapes ``&<>`` and may
add an emoji; Teams sends them as they are). Backticks mark names and ids; both platforms
show them as code. Keeping them here is what keeps the two platforms from drifting apart.
"""

from __future__ import annotations

import math

from bot.errors import RateLimited
from bot.ports import JobStatus
from bot.types import Vote

# -- asking ---------------------------------------------------------------------------------------
HELP = (
    "Ask me a support question and I'll answer from the knowledge base, with sources. "
    "In a channel or group chat, @mention me. Admins can add knowledge with `ingest <url or source>`."
)
EMPTY_QUESTION = "Hi! Ask me a question and I'll answer from the knowledge base, with sources."
ASK_USAGE = "Usage: `/ask <question>`, e.g. `/ask How do I reset my password?` (only you see the answer)."
FAILED = "Sorry, something went wrong while I was answering. Please try again in a minute."


def looking_up(question: str) -> str:
    """The acknowledgement of a private ``/ask`` while the answer is being written."""
    return f"Looking up “{question}”…"


def too_fast(exc: RateLimited, what: str = "questions") -> str:
    """What the asker is told when limited: why, and when to try again."""
    wait = max(1, math.ceil(exc.retry_after))
    when = f"{wait} seconds" if wait < 120 else f"{math.ceil(wait / 60)} minutes"
    return f"You're sending {what} faster than I can take them here. Please try again in about {when}."


# -- votes ----------------------------------------------------------------------------------------
def thanks(vote: Vote) -> str:
    """The thank-you after a vote was recorded."""
    if vote == Vote.UP:
        return "Thanks for the feedback! Glad it helped."
    return "Thanks for the feedback. It helps us fix what the bot got wrong."


VOTE_UNKNOWN_ANSWER = "Sorry, I couldn't find that answer any more."
VOTE_FAILED = "Sorry, I couldn't record your vote. Please try again later."

# -- sharing (Slack's "Share in channel") ---------------------------------------------------------
SHARE_GONE = "That answer is no longer available; please ask again."
SHARE_WIDER_ACCESS = "This answer used sources this channel can't see, so I won't share it here."
SHARE_FAILED = "I couldn't post in this channel."
SHARE_INVITE_HINT = " Invite me first: `/invite @supportbot`."

# -- ingest ---------------------------------------------------------------------------------------
INGEST_USAGE = (
    "Usage: `/ingest <url or source name>`, e.g. `/ingest https://help.example.com/guide` or "
    "`/ingest handbook`. I'll tell you when it has finished."
)
INGEST_USAGE_TEAMS = (
    "Usage: `ingest <url or source name>`, e.g. `ingest https://help.example.com/guide` or "
    "`ingest handbook`. I'll tell you when it has finished."
)
REFUSE_INGEST = "Sorry, only the knowledge base admins can add sources. Ask one of them to run it for you."
NO_QUEUE = "Ingest isn't available here: no worker queue is configured."
QUEUE_FAILED = "Sorry, I couldn't queue that ingest. Please try again later."


def ingest_requested(target: str) -> str:
    return f"Ingest of `{target}` requested…"


def ingest_queued(target: str, job_id: str, where: str) -> str:
    """``where``: "here" or "in a direct message" (where the worker will report)."""
    return f"Queued the ingest of `{target}` (job `{job_id}`). I'll report progress and the result {where}."


def ingest_progress(target: str, status: JobStatus) -> str:
    count = f"{status.done} of {status.total}" if status.total is not None else str(status.done)
    current = f" (now: {status.current})" if status.current else ""
    return f"Ingesting `{target}`: {count} documents done{current}."


def ingest_result(target: str, status: JobStatus) -> str:
    if status.state == "done":
        return f"Finished ingesting `{target}`: {status.summary or 'done'}."
    return f"Ingest of `{target}` failed: {status.error or 'unknown error'}."
