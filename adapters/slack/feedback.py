"""Listeners for votes: 👍/👎 reactions on an answer, the vote buttons, "tell us what was wrong"
(a button and its modal). The rules (the answer must exist, one vote per user, when it was
cast) are the core's: :meth:`bot.conversation.Conversation.vote`.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk.errors import SlackClientError

from adapters.slack.inbound import Interaction, parse_action
from adapters.slack.render import (
    ACTION_COMMENT,
    ACTION_VOTE_DOWN,
    ACTION_VOTE_UP,
    VIEW_FEEDBACK,
    comment_prompt_blocks,
    escape,
    feedback_modal,
    thanks_text,
)
from bot.conversation import VoteResult
from bot.types import Platform, Vote

if TYPE_CHECKING:
    from adapters.slack.app import SlackBot

log = logging.getLogger(__name__)

UP_REACTIONS = frozenset({"+1", "thumbsup"})
DOWN_REACTIONS = frozenset({"-1", "thumbsdown"})


def register(app: App, bot: SlackBot) -> None:
    def on_reaction(event: dict[str, Any], context: BoltContext) -> None:
        item = event.get("item") or {}
        name = str(event.get("reaction", "")).split("::", 1)[0]  # drop skin tones
        vote = Vote.UP if name in UP_REACTIONS else Vote.DOWN if name in DOWN_REACTIONS else None
        if vote is None or item.get("type") != "message":
            return
        if context.bot_user_id and event.get("item_user") not in (None, context.bot_user_id):
            return  # a reaction on someone else's message
        channel, user = str(item.get("channel", "")), str(event.get("user", ""))
        found = bot.state.answer_for(channel, str(item.get("ts", "")))
        if found is None:
            log.debug("reaction on %s/%s: not a known answer", channel, item.get("ts"))
            return
        answer_id, thread_ts = found
        result = bot.conversation.vote(Platform.SLACK, user, answer_id, vote)
        if not result.recorded:
            return
        if vote == Vote.DOWN and bot.verified is not None:
            bot.verified.after_down_vote(bot.team({}, context), channel, thread_ts, answer_id)
        try:
            bot.client.chat_postEphemeral(
                channel=channel,
                user=user,
                thread_ts=thread_ts or None,
                text=thanks_text(vote),
                blocks=comment_prompt_blocks(answer_id) if vote == Vote.DOWN else None,
            )
        except SlackClientError as exc:
            log.warning("could not thank %s: %s", user, exc)

    def on_vote(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        click = parse_action(body, action)
        vote = Vote.UP if click.action_id == ACTION_VOTE_UP else Vote.DOWN
        if vote == Vote.DOWN and click.trigger_id:
            # First: a trigger_id is only good for 3 seconds after the click.
            open_modal(bot, click.trigger_id, click.value)
        result = bot.conversation.vote(Platform.SLACK, click.user, click.value, vote)
        thank(bot, click, respond, result)
        if result.recorded and vote == Vote.DOWN and bot.verified is not None:
            bot.verified.after_down_vote(click.team, click.channel, click.thread_ts, click.value)

    def on_comment_button(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        click = parse_action(body, action)
        open_modal(bot, click.trigger_id, click.value)

    def on_feedback_view(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        ack()
        try:
            answer_id = str(json.loads(view.get("private_metadata") or "{}")["answer_id"])
        except (ValueError, KeyError):
            log.warning("feedback modal without an answer id")
            return
        values = (view.get("state") or {}).get("values") or {}
        comment = str(((values.get("comment") or {}).get("comment") or {}).get("value") or "").strip()
        if comment:  # replaces the 👎 vote with the same vote plus its comment
            bot.conversation.vote(Platform.SLACK, str(body["user"]["id"]), answer_id, Vote.DOWN, comment)

    app.event("reaction_added")(on_reaction)
    app.action(ACTION_VOTE_UP)(on_vote)
    app.action(ACTION_VOTE_DOWN)(on_vote)
    app.action(ACTION_COMMENT)(on_comment_button)
    app.view(VIEW_FEEDBACK)(on_feedback_view)


def open_modal(bot: SlackBot, trigger_id: str, answer_id: str) -> None:
    try:
        bot.client.views_open(trigger_id=trigger_id, view=feedback_modal(answer_id, json.dumps({"answer_id": answer_id})))
    except SlackClientError as exc:
        log.warning("could not open the feedback modal: %s", exc)


def thank(bot: SlackBot, click: Interaction, respond: Respond, result: VoteResult) -> None:
    text = thanks_text(result.vote) if result.recorded else escape(result.text)
    try:
        if click.ephemeral or not click.channel:
            respond(text=text, response_type="ephemeral", replace_original=False)
        else:
            bot.client.chat_postEphemeral(
                channel=click.channel, user=click.user, thread_ts=click.thread_ts or None, text=text
            )
    except Exception as exc:  # noqa: BLE001 - a lost thank-you is not worth a failure
        log.warning("could not thank the voter: %s", type(exc).__name__)
