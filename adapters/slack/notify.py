"""The ``Notifier`` port on Slack: the worker tells an ``/ingest`` requester how the job went.

Progress is one message, posted once and then updated (``chat.postMessage`` /
``chat.update``); the result is a new message, so it notifies. Messages go to the
conversation the command came from when that is a direct message with the bot, else to a
direct message with the requester (a post in the channel would show everyone the
bookkeeping, and ephemeral messages cannot be updated). Only slack_sdk is imported: the
worker never loads bolt.
"""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.errors import ProviderRejected, ProviderUnavailable
from bot.types import ChatAddress


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackNotifier:
    """Notifier over a WebClient (aimed at the configured Slack API URL; it waits out 429s)."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    @staticmethod
    def channel_for(address: ChatAddress) -> str:
        if address.conversation.startswith("D") or not address.user:
            return address.conversation
        return address.user  # posting to a user id opens the app's direct message with them

    def post(self, address: ChatAddress, text: str) -> str:
        try:
            reply = self.client.chat_postMessage(
                channel=self.channel_for(address), thread_ts=address.thread or None, text=_escape(text)
            )
        except SlackApiError as exc:
            raise ProviderRejected(f"Slack refused the note: {exc.response.get('error')}") from None
        except SlackClientError as exc:
            raise ProviderUnavailable(f"Slack unreachable: {type(exc).__name__}") from None
        return f"{reply.get('channel') or self.channel_for(address)} {reply['ts']}"

    def update(self, address: ChatAddress, message_id: str, text: str) -> None:
        channel, _, ts = message_id.partition(" ")
        try:
            self.client.chat_update(channel=channel, ts=ts, text=_escape(text))
        except SlackApiError as exc:
            raise ProviderRejected(f"Slack refused the update: {exc.response.get('error')}") from None
        except SlackClientError as exc:
            raise ProviderUnavailable(f"Slack unreachable: {type(exc).__name__}") from None
