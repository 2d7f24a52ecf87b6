"""The small interface between the Teams bot logic and the Bot Framework library.

Everything that imports ``botbuilder`` lives in :mod:`adapters.teams.botframework`, which
implements :class:`ChannelGateway`; the bot logic (:mod:`adapters.teams.handler`) and the
card renderer (:mod:`adapters.teams.render`) only see this module. Microsoft has archived
the Bot Framework SDK; its successor (``microsoft-agents-hosting-aiohttp``) speaks the same
wire protocol, so moving means writing one new gateway module against these Protocols.

Activities cross this boundary in the Bot Framework *wire format* (the camelCase JSON the
channel posts and the Connector API accepts). That format is the stable contract both SDKs
share, so it is deliberately not re-modelled as dataclasses here; the handler parses the
few fields it needs into frozen dataclasses (:mod:`adapters.teams.activity`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

WireActivity = Mapping[str, Any]
"""One activity in Bot Framework wire format (camelCase JSON object)."""


class Unauthorized(Exception):
    """The request's bearer token is missing, malformed, forged or meant for another bot (HTTP 401)."""


class UnendorsedServiceUrl(Unauthorized):
    """The activity's ``serviceUrl`` is not one the bot may reply to (see ``adapters/teams/exposure.py``)."""


class MalformedActivity(ValueError):
    """The activity is JSON but not an activity the SDK can read (wrong shapes): answer 400."""


class ChannelUnavailable(Exception):
    """The token could not be checked because the OpenID metadata could not be fetched (HTTP 503)."""


@dataclass(frozen=True)
class InvokeReply:
    """The HTTP answer to an ``invoke`` activity: Teams shows ``body`` to the user for some invokes."""

    status: int = 200
    body: Mapping[str, Any] | None = field(default_factory=dict)


class TurnIO(Protocol):
    """One turn: the activity that started it and the ways to answer in its conversation.

    ``send`` replies in the same conversation and thread and returns the new activity's id
    (``""`` when the channel gives none). ``update`` replaces an activity the bot sent.
    Both raise on transport errors (the caller logs; nothing is retried here because the
    Connector client already retries 429s and the chat moves on).
    """

    @property
    def activity(self) -> WireActivity: ...

    async def send(self, activity: WireActivity) -> str: ...

    async def update(self, activity_id: str, activity: WireActivity) -> None: ...

    def reference(self) -> dict[str, Any]:
        """A JSON-safe conversation reference, for proactive messages later."""
        ...

    async def member(self, user_id: str) -> Mapping[str, Any]:
        """The Teams member record (wire format: ``userPrincipalName``, ``aadObjectId``, ...)."""
        ...


TurnLogic = Callable[[TurnIO], Awaitable[InvokeReply | None]]
"""The bot's handler for one turn; it returns an InvokeReply for invoke activities."""


class Authenticated(Protocol):
    """Opaque proof that an incoming request was authenticated (or that auth is disabled)."""


class ChannelGateway(Protocol):
    """Authenticates incoming activities, runs turns, and starts proactive turns.

    ``authenticate`` raises :class:`Unauthorized` for any bad token (never another error
    for a bad token) and :class:`ChannelUnavailable` when the signing keys cannot be
    fetched. ``run`` executes ``logic`` for the activity and returns the invoke reply (for
    invoke activities) or ``None``. ``continue_conversation`` runs ``logic`` in the
    conversation a stored reference points at (used for ingest progress).
    """

    @property
    def auth_enabled(self) -> bool: ...

    async def authenticate(self, auth_header: str | None, activity: WireActivity) -> Authenticated: ...

    async def run(self, auth: Authenticated, activity: WireActivity, logic: TurnLogic) -> InvokeReply | None: ...

    async def continue_conversation(self, reference: Mapping[str, Any], logic: TurnLogic) -> None: ...
