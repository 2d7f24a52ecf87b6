"""Slack over Socket Mode: no public URL; the app opens a websocket to Slack (SLACK_APP_TOKEN).

``apps.connections.open`` is called on the same Web API base URL as every other method,
so GovSlack, proxies and the tests' fake server work the same way as in HTTP mode.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_bolt.adapter.socket_mode import SocketModeHandler

from adapters.slack.app import SlackBot
from bot.errors import ConfigError

if TYPE_CHECKING:
    from adapters.factory import Services

log = logging.getLogger(__name__)


def socket_handler(bot: SlackBot, app_token: str) -> SocketModeHandler:
    """A Socket Mode handler driving ``bot``; call ``.connect()`` (non-blocking) or ``.start()``."""
    if not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token (xapp-...)")
    return SocketModeHandler(bot.app, app_token, web_client=bot.client)


def run_socket_mode(services: Services) -> None:
    """Connect to Slack over Socket Mode and serve until interrupted."""
    if services.settings.slack_mode == "http":
        raise ConfigError("SUPPORTBOT_SLACK_MODE=http: Slack sends requests to `supportbot serve` instead")
    token = services.settings.slack_app_token
    if token is None:
        raise ConfigError("Socket Mode needs SLACK_APP_TOKEN (an app-level token with connections:write)")
    bot = services.slack_bot(socket_mode=True)
    handler = socket_handler(bot, token.get_secret_value())
    log.info("Slack Socket Mode: connecting")
    try:
        handler.start()  # type: ignore[no-untyped-call]  # bolt leaves start() unannotated
    finally:
        bot.close()
