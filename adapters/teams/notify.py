"""The ``Notifier`` port on Teams: the worker posts an ``ingest``'s progress and result proactively.

The job carries the conversation reference's parts (:class:`bot.types.ChatAddress`: service
URL, conversation, the command's activity id, bot and tenant), so any process with the
bot's credentials can post, however often the web process restarted. Progress is one
message updated in place; the result a new reply under the command. The turn runs through
the :class:`~adapters.teams.protocol.ChannelGateway` (which keeps proactive messages of an
unauthenticated bot on loopback), on an event loop this notifier owns: the worker is sync.
"""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.teams import render
from adapters.teams.protocol import ChannelGateway, TurnIO
from bot.errors import ProviderUnavailable, SupportbotError
from bot.types import ChatAddress, Platform


def address_from_reference(reference: dict[str, Any], user: str) -> ChatAddress:
    """The address of a turn's conversation reference (what the handler stores with a job);
    ``user`` is the requester's channel id (``29:…``), the one a reply's recipient carries."""
    conversation = reference.get("conversation") or {}
    return ChatAddress(
        Platform.TEAMS,
        str(conversation.get("id") or ""),
        user=user,
        thread=str(reference.get("activityId") or ""),
        service_url=str(reference.get("serviceUrl") or ""),
        bot=str((reference.get("bot") or {}).get("id") or ""),
        tenant=str(conversation.get("tenantId") or ""),
        channel=str(reference.get("channelId") or ""),
    )


def reference_for(address: ChatAddress) -> dict[str, Any]:
    """The Bot Framework conversation reference (wire format) an address describes."""
    conversation: dict[str, Any] = {"id": address.conversation}
    if address.tenant:
        conversation["tenantId"] = address.tenant
    reference: dict[str, Any] = {
        "channelId": address.channel or "msteams",
        "serviceUrl": address.service_url,
        "conversation": conversation,
        "bot": {"id": address.bot},
    }
    if address.thread:
        reference["activityId"] = address.thread
    if address.user:
        reference["user"] = {"id": address.user}
    return reference


class TeamsNotifier:
    """Notifier over a ChannelGateway (proactive turns)."""

    def __init__(self, gateway: ChannelGateway) -> None:
        self.gateway = gateway
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self, address: ChatAddress, text: str, replace: str = "") -> str:
        sent: list[str] = []

        async def logic(turn: TurnIO) -> None:
            if replace:
                await turn.update(replace, render.text_activity(text))
                sent.append(replace)
            else:
                sent.append(await turn.send(render.text_activity(text)))

        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self.gateway.continue_conversation(reference_for(address), logic))
        except SupportbotError:
            raise
        except Exception as exc:  # the SDK's transport errors: the caller logs and goes on
            raise ProviderUnavailable(f"Teams proactive message failed: {type(exc).__name__}") from None
        return sent[0] if sent else ""

    def post(self, address: ChatAddress, text: str) -> str:
        return self._run(address, text)

    def update(self, address: ChatAddress, message_id: str, text: str) -> None:
        self._run(address, text, replace=message_id)
