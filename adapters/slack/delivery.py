"""Showing an answer in Slack: streamed while it is written (``chat.startStream`` /
``appendStream`` / ``stopStream``, or ``chat.update`` where streaming is unavailable), then
replaced by the final Block Kit answer. When to show progress is the core's
:class:`bot.conversation.Cadence`; what to show, ``adapters/slack/render.py``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from adapters.slack.render import escape, metadata, partial_text, render_answer
from adapters.slack.state import SlackState
from bot import messages
from bot.conversation import Cadence
from bot.types import Answer

log = logging.getLogger(__name__)

WORKING_REACTION = "eyes"


@dataclass
class Draft:
    """Where an answer in progress is shown: nothing yet, a chat stream, or a message we update."""

    channel: str
    thread_ts: str
    team: str
    user: str
    ts: str | None = None
    mode: str = ""  # "" | "stream" | "update"
    sent: int = 0  # characters already streamed


class Delivery:
    """Posts answers and what goes with them; every Slack call of the answer path is here."""

    def __init__(
        self,
        client: WebClient,
        state: SlackState,
        *,
        streaming: bool,
        cadence: Callable[[], Cadence],
        extra_actions: Callable[[Answer], list[dict[str, Any]]] = lambda answer: [],
    ) -> None:
        self.client = client
        self.state = state
        self.cadence = cadence
        self.extra_actions = extra_actions
        self._stream_methods_ok = streaming and hasattr(client, "chat_startStream")
        self.streaming = streaming

    def show(self, events: Iterable[str | Answer], draft: Draft) -> Answer:
        """Consume the answer service's events: progress when the cadence says so, then the Answer."""
        cadence = self.cadence()
        pieces: list[str] = []
        answer: Answer | None = None
        for item in events:
            if isinstance(item, Answer):
                answer = item
                continue
            pieces.append(item)
            if self.streaming and cadence.due():
                self._progress(draft, "".join(pieces))
        if answer is None:  # the service's contract: the last item is the Answer
            raise RuntimeError("the answer service ended without an Answer")
        self.final(answer, draft)
        return answer

    def _progress(self, d: Draft, text: str) -> None:
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
            reply = self.client.chat_postMessage(channel=d.channel, thread_ts=d.thread_ts, text=partial_text(text))
            d.ts, d.mode = str(reply["ts"]), "update"
            return
        self.client.chat_update(channel=d.channel, ts=str(d.ts), text=partial_text(text))

    def final(self, answer: Answer, d: Draft) -> None:
        first, *rest = render_answer(answer, extra_actions=self.extra_actions(answer))
        meta = metadata(answer.id)
        if d.ts is not None:
            if d.mode == "stream":
                try:
                    self.client.chat_stopStream(channel=d.channel, ts=d.ts)
                except SlackApiError as exc:
                    log.info("chat.stopStream failed (%s); replacing the message anyway", exc.response.get("error"))
            # The final Answer is authoritative (citations renumbered, or declined): replace the draft.
            self.client.chat_update(channel=d.channel, ts=d.ts, text=first.text, blocks=list(first.blocks), metadata=meta)
            ts = d.ts
        else:
            ts = self.post(d.channel, d.thread_ts, first.text, list(first.blocks), meta)
        self.state.remember_answer(d.channel, ts, answer.id, d.thread_ts)
        for message in rest:
            more = self.post(d.channel, d.thread_ts, message.text, list(message.blocks), meta)
            self.state.remember_answer(d.channel, more, answer.id, d.thread_ts)

    def post(self, channel: str, thread_ts: str | None, text: str, blocks: list[Any], meta: dict[str, Any]) -> str:
        reply = self.client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=text, blocks=blocks, metadata=meta,
            unfurl_links=False, unfurl_media=False,
        )
        return str(reply["ts"])

    def say(self, channel: str, thread_ts: str | None, text: str) -> None:
        """A plain sentence from ``bot.messages`` in the thread."""
        self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=escape(text))

    def tell(self, channel: str, user: str, thread_ts: str | None, text: str, **extra: Any) -> None:
        """Something only ``user`` needs to see: ephemeral in a channel, a message in a DM."""
        try:
            if channel.startswith("D"):
                self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=escape(text))
            else:
                self.client.chat_postEphemeral(
                    channel=channel, user=user, thread_ts=thread_ts or None, text=escape(text), **extra
                )
        except SlackClientError as exc:
            log.warning("could not tell %s: %s", user, exc)

    def failed(self, d: Draft) -> None:
        try:
            if d.ts is not None:
                if d.mode == "stream":
                    with contextlib.suppress(SlackApiError):  # replaced just below either way
                        self.client.chat_stopStream(channel=d.channel, ts=d.ts)
                self.client.chat_update(channel=d.channel, ts=d.ts, text=messages.FAILED, blocks=[])
            else:
                self.client.chat_postMessage(channel=d.channel, thread_ts=d.thread_ts, text=messages.FAILED)
        except SlackClientError as exc:
            log.error("could not tell the user about the failure either: %s", exc)

    def react(self, channel: str, ts: str, *, add: bool) -> None:
        # Cosmetic: a missing reactions:write scope must not stop the answer.
        try:
            if add:
                self.client.reactions_add(channel=channel, timestamp=ts, name=WORKING_REACTION)
            else:
                self.client.reactions_remove(channel=channel, timestamp=ts, name=WORKING_REACTION)
        except SlackClientError as exc:
            log.debug("reaction %s failed: %s", "add" if add else "remove", exc)
