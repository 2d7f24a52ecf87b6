"""Listeners for slash commands and sharing: ``/ask`` (a private answer with "Share in channel"),
the share button, and ``/ingest`` (queued for the workers, which report back themselves:
``adapters/slack/notify.py`` through the ``Notifier`` port).

Every command is acknowledged first; the work runs after the ack on bolt's listener pool.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond
from slack_sdk.errors import SlackApiError

from adapters.slack.inbound import clean_text, command_argument, is_private, parse_action, parse_command
from adapters.slack.render import ACTION_SHARE, escape, metadata, render_answer, share_button
from bot import messages
from bot.conversation import ChatMessage, parse_ingest_target
from bot.types import Platform

if TYPE_CHECKING:
    from adapters.slack.app import SlackBot

log = logging.getLogger(__name__)


def register(app: App, bot: SlackBot) -> None:
    def on_ask(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        cmd = parse_command(command)
        text = clean_text(cmd.text, None)
        if not text:
            ack(text=messages.ASK_USAGE)
            return
        msg = cmd.chat_message(text)
        if limited := bot.conversation.limited(msg):
            ack(text=limited)
            return
        ack(text=":mag: " + escape(messages.looking_up(text)))
        try:
            question = bot.conversation.question(msg, bot.directory_for(cmd.user))
            answer = bot.conversation.answer(question)
            message = render_answer(answer, extra_actions=[share_button(answer.id)])[0]
        except Exception:
            log.exception("/ask failed")
            respond_quietly(respond, text=messages.FAILED, response_type="ephemeral", replace_original=True)
            return
        # Delivery through the command's response_url is Slack's side: a failure there is one
        # line in the log, not an answering error with a traceback.
        respond_quietly(
            respond, text=message.text, blocks=list(message.blocks), response_type="ephemeral", replace_original=True
        )

    def on_share(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        click = parse_action(body, action)
        answer = bot.conversation.get_answer(click.value)
        if answer is None:
            respond(text=messages.SHARE_GONE, replace_original=False)
            return
        where = ChatMessage(Platform.SLACK, click.user, click.channel, "", private=is_private(click.channel))
        audience = bot.conversation.groups(where)
        if not answer.question.groups <= audience:
            # The answer was written with more access than this channel has: sharing could leak.
            respond(text=messages.SHARE_WIDER_ACCESS, replace_original=False)
            return
        try:
            for message in render_answer(answer, shared_by=click.user):
                ts = bot.delivery.post(click.channel, None, message.text, list(message.blocks), metadata(answer.id))
                bot.state.remember_answer(click.channel, ts, answer.id, "")
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("sharing an answer in %s failed: %s", click.channel, error)
            hint = messages.SHARE_INVITE_HINT if error in ("not_in_channel", "channel_not_found") else ""
            respond(text=messages.SHARE_FAILED + hint, replace_original=False)
            return
        respond(delete_original=True)

    def on_ingest(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        cmd = parse_command(command)
        argument = command_argument(cmd.text)
        target, problem = parse_ingest_target(argument)
        if target is None:  # usage help at once; everything else may need Slack or the broker
            ack(text=escape(f"{problem}\n{messages.INGEST_USAGE}"))
            return
        ack(text=":hourglass_flowing_sand: " + escape(messages.ingest_requested(target)))
        where = "here" if cmd.private else "in a direct message"
        reply = bot.conversation.request_ingest(
            cmd.chat_message(argument), argument, cmd.address(), bot.admin_confirm(cmd.user), where=where
        )
        respond_quietly(respond, text=escape(reply.text), response_type="ephemeral", replace_original=False)

    app.command("/ask")(on_ask)
    app.action(ACTION_SHARE)(on_share)
    app.command("/ingest")(on_ingest)


def respond_quietly(respond: Respond, **message: Any) -> None:
    try:
        respond(**message)
    except Exception as exc:  # noqa: BLE001 - nothing more we can do; it is logged
        log.error("could not deliver a command reply: %s", type(exc).__name__)
