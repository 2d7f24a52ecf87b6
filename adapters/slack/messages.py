"""Listeners for questions: ``app_mention`` and ``message`` (DMs, follow-ups in the bot's threads).

Each event is parsed once (:func:`adapters.slack.inbound.parse_event`), claimed once (Slack
retries events and sends both ``app_mention`` and ``message`` for one mention; bolt
deduplicates neither), then the core answers and :mod:`adapters.slack.delivery` shows it.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltContext
from slack_sdk.errors import SlackApiError

from adapters.slack.delivery import Draft
from adapters.slack.inbound import SlackEvent, clean_text, parse_event
from bot import messages
from bot.types import Turn

if TYPE_CHECKING:
    from adapters.slack.app import SlackBot

log = logging.getLogger(__name__)

HISTORY_MESSAGES = 50  # conversations.replies page: the core keeps the last few turns


def register(app: App, bot: SlackBot) -> None:
    def on_mention(event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        answer(bot, parse_event(event, bot.team(body, context), context.bot_user_id))

    def on_message(event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        ev = parse_event(event, bot.team(body, context), context.bot_user_id)
        if not ev.answerable:
            return
        if ev.private or ev.mentions_bot:
            pass  # a DM is always addressed to the bot; a mention's app_mention is deduplicated
        elif not (ev.in_thread and bot.state.is_bot_thread(ev.team, ev.channel, ev.thread_ts)):
            return
        elif bot.verified is not None and bot.verified.awaits_expert(ev.channel, ev.thread_ts, ev.user):
            return  # an expert answering the question the bot could not: not a question for the bot
        answer(bot, ev)

    app.event("app_mention")(on_mention)
    app.event("message")(on_message)


def answer(bot: SlackBot, ev: SlackEvent) -> None:
    """Answer one message in its thread (once, however often Slack delivers it)."""
    if not bot.state.claim(ev.team, ev.channel, ev.ts):
        log.debug("duplicate delivery of %s/%s ignored", ev.channel, ev.ts)
        return
    delivery = bot.delivery
    delivery.react(ev.channel, ev.ts, add=True)
    draft = Draft(ev.channel, ev.thread_ts, ev.team, ev.user)
    try:
        if not ev.text:
            delivery.say(ev.channel, ev.thread_ts, messages.EMPTY_QUESTION)
            return
        if limited := bot.conversation.limited(ev.chat_message()):
            delivery.tell(ev.channel, ev.user, ev.thread_ts, limited)
            return
        msg = ev.chat_message(history_of(bot, ev) if ev.in_thread else ())
        question = bot.conversation.question(msg, bot.directory_for(ev.user))
        delivery.show(bot.conversation.stream(question), draft)
        bot.state.mark_thread(ev.team, ev.channel, ev.thread_ts)
    except Exception:
        log.exception("answering Slack message %s/%s failed", ev.channel, ev.ts)
        delivery.failed(draft)
    finally:
        delivery.react(ev.channel, ev.ts, add=False)


def history_of(bot: SlackBot, ev: SlackEvent) -> tuple[Turn, ...]:
    """Earlier turns of the thread, oldest first; none if Slack won't give them (the answer
    is still worth giving without them)."""
    try:
        reply = bot.client.conversations_replies(channel=ev.channel, ts=ev.thread_ts, limit=HISTORY_MESSAGES)
    except SlackApiError as exc:
        log.warning("conversations.replies failed (%s); answering without the thread", exc.response.get("error"))
        return ()
    turns: list[Turn] = []
    for message in reply.get("messages") or []:
        mts = str(message.get("ts", ""))
        if not mts or float(mts) >= float(ev.ts):
            continue
        mine = bool(message.get("bot_id")) or (bool(ev.bot_user) and message.get("user") == ev.bot_user)
        text = message.get("text") or ""
        if mine:  # drop the fallback's source list: it is not part of what was said
            text = re.sub(r"\nSources: .*\Z", "", text, flags=re.DOTALL)
        text = clean_text(text, ev.bot_user or None)
        if text:
            turns.append(Turn("assistant" if mine else "user", text))
    return tuple(turns)
