"""The only module that imports the Bot Framework SDK (botbuilder 4.17, CloudAdapter).

It implements :class:`adapters.teams.protocol.ChannelGateway`. Microsoft has archived the
Bot Framework SDK; its successor ``microsoft-agents-hosting-aiohttp`` speaks the same
protocol, so replacing this file (about 200 lines) is the whole migration.

Two known 4.17.1 bugs are worked around here rather than in callers:

* a junk or forged bearer token makes the SDK raise ``jwt`` errors, ``IndexError`` (unknown
  key id) or bare ``Exception`` instead of ``PermissionError``, which would surface as HTTP
  500. :meth:`BotFrameworkGateway.authenticate` maps every failure to :class:`Unauthorized`.
* ``ActivityHandler.on_adaptive_card_invoke`` fails with 500, so no ActivityHandler is used
  at all: the bot logic dispatches on the wire activity itself.

Where replies may go is checked here too, before any turn runs (see
:mod:`adapters.teams.exposure`): with authentication, only to the ``serviceUrl`` the
validated token's ``serviceurl`` claim endorses (a token without that claim, e.g. the
Emulator's, endorses loopback only); without it, only to loopback. The connector client
never follows redirects, so an endorsed URL cannot bounce a reply somewhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import requests
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.core.teams import TeamsInfo
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes, ConversationReference, Entity
from botframework.connector.auth import AuthenticateRequestResult

from adapters.teams.exposure import is_loopback_url
from adapters.teams.protocol import (
    Authenticated,
    ChannelUnavailable,
    InvokeReply,
    MalformedActivity,
    TurnLogic,
    Unauthorized,
    UnendorsedServiceUrl,
    WireActivity,
)
from bot.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BotFrameworkConfig:
    """What the SDK needs. An empty ``app_id`` disables authentication (local/emulator mode).

    ``openid_metadata_url`` and ``token_issuer`` override the public-cloud endpoints the
    channel's tokens are checked against (sovereign clouds, and the offline auth tests).
    """

    app_id: str = ""
    app_password: str = ""
    tenant_id: str = ""
    app_type: str = "MultiTenant"
    openid_metadata_url: str | None = None
    token_issuer: str | None = None


class _SdkConfiguration:
    """The attribute bag ConfigurationBotFrameworkAuthentication reads (upper-case names)."""

    def __init__(self, config: BotFrameworkConfig) -> None:
        self.APP_ID = config.app_id
        self.APP_PASSWORD = config.app_password
        self.APP_TENANTID = config.tenant_id
        self.APP_TYPE = config.app_type
        if config.openid_metadata_url:
            self.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = config.openid_metadata_url
            self.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = config.token_issuer or "https://api.botframework.com"
            # The parameterized code path needs the outbound scope/login spelled out too.
            self.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = "https://api.botframework.com"
            self.TO_CHANNEL_FROM_BOT_LOGIN_URL = (
                f"https://login.microsoftonline.com/{config.tenant_id or 'botframework.com'}"
            )


class _WireEntity(Entity):  # type: ignore[misc]
    """An entity serialised with all its keys: the SDK's Entity model would drop
    ``streamId`` / ``streamSequence`` and the AI-label fields Teams needs."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(type=data.get("type"))
        # msrest serialises by the instance's attribute map, so one per entity keeps every key.
        self._attribute_map = {key: {"key": key, "type": "object"} for key in data}
        for key, value in data.items():
            setattr(self, key, value)


def _to_sdk(activity: WireActivity) -> Activity:
    sdk = Activity().deserialize(dict(activity))
    if activity.get("entities"):
        sdk.entities = [_WireEntity(e) for e in activity["entities"]]
    return sdk


class _Turn:
    """TurnIO over a botbuilder TurnContext."""

    def __init__(self, context: TurnContext, wire: WireActivity) -> None:
        self._context = context
        self._wire = wire

    @property
    def activity(self) -> WireActivity:
        return self._wire

    async def send(self, activity: WireActivity) -> str:
        response = await self._context.send_activity(_to_sdk(activity))
        return str(getattr(response, "id", "") or "")

    async def update(self, activity_id: str, activity: WireActivity) -> None:
        sdk = _to_sdk(activity)
        sdk.id = activity_id
        await self._context.update_activity(sdk)

    def reference(self) -> dict[str, Any]:
        ref = TurnContext.get_conversation_reference(self._context.activity)
        return dict(ref.serialize())

    async def member(self, user_id: str) -> Mapping[str, Any]:
        account = await TeamsInfo.get_member(self._context, user_id)
        return {**account.serialize(), **(account.additional_properties or {})}


def _no_redirects(context: TurnContext) -> None:
    """The turn's Connector client must not follow redirects (msrest follows up to 30 by default)."""
    client = context.turn_state.get(context.adapter.BOT_CONNECTOR_CLIENT_KEY)
    config = getattr(client, "config", None)
    if config is not None and getattr(config, "redirect_policy", None) is not None:
        config.redirect_policy.allow = False


class BotFrameworkGateway:
    """ChannelGateway on botbuilder's CloudAdapter. Construction has no side effects.

    ``credentials_factory`` (an SDK ``ServiceClientCredentialsFactory``) replaces the one
    built from the app id and password: for certificate credentials, or a test's own tokens.
    """

    def __init__(self, config: BotFrameworkConfig, *, credentials_factory: Any = None) -> None:
        self.config = config
        self._credentials_factory = credentials_factory
        self._adapter: CloudAdapter | None = None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.config.app_id)

    @property
    def adapter(self) -> CloudAdapter:
        if self._adapter is None:
            try:
                auth = ConfigurationBotFrameworkAuthentication(
                    _SdkConfiguration(self.config), credentials_factory=self._credentials_factory
                )
            except Exception as exc:  # noqa: BLE001 - the SDK raises bare Exception for bad config
                raise ConfigError(f"Teams (Bot Framework) settings: {exc}") from exc
            # No on_turn_error: without one the adapter re-raises, so the router (or the
            # background task) logs the failure once, with its traceback.
            self._adapter = CloudAdapter(auth)
        return self._adapter

    async def authenticate(self, auth_header: str | None, activity: WireActivity) -> Authenticated:
        """Validate the bearer token for this activity (see the module docstring for why so broad)."""
        try:
            sdk_activity = Activity().deserialize(dict(activity))
        except Exception as exc:  # noqa: BLE001 - msrest raises several unrelated types for bad shapes
            raise MalformedActivity(f"unreadable activity: {type(exc).__name__}") from None
        adapter = self.adapter  # outside the try: a configuration error is not a bad token
        try:
            result = await adapter.bot_framework_authentication.authenticate_request(
                # None, not "": the SDK only takes the "no header" branch for None.
                sdk_activity, auth_header or None
            )
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"could not fetch the token signing keys: {type(exc).__name__}") from exc
        except Exception as exc:  # noqa: BLE001 - the SDK raises arbitrary types for bad tokens
            raise Unauthorized(f"{type(exc).__name__}: {exc}") from exc
        claims = getattr(result.claims_identity, "claims", None) or {}
        self._check_endorsed(activity.get("serviceUrl"), claims.get("serviceurl") if self.auth_enabled else None)
        return cast(Authenticated, result)

    def _check_endorsed(self, service_url: object, endorsed: object) -> None:
        """Raise UnendorsedServiceUrl unless replies to ``service_url`` are allowed (module docstring)."""
        if service_url is None:
            return  # nowhere to reply to: invokes answer in the HTTP response
        if endorsed:
            if service_url != endorsed:  # the SDK checks this too; a second look costs nothing
                raise UnendorsedServiceUrl("the activity's serviceUrl is not the one its token endorses")
            return
        if not is_loopback_url(service_url):
            why = "its token endorses no serviceUrl" if self.auth_enabled else "it is not authenticated"
            raise UnendorsedServiceUrl(
                f"serviceUrl {str(service_url)[:100]!r} refused: {why}, so the bot replies only to loopback"
            )

    async def run(self, auth: Authenticated, activity: WireActivity, logic: TurnLogic) -> InvokeReply | None:
        """Run one turn through the adapter's pipeline; return the invoke reply if any."""
        assert isinstance(auth, AuthenticateRequestResult)

        async def callback(context: TurnContext) -> None:
            _no_redirects(context)
            reply = await logic(_Turn(context, activity))
            if reply is not None and context.activity.type == ActivityTypes.invoke:
                await context.send_activity(
                    Activity(
                        type=ActivityTypes.invoke_response,
                        value=InvokeResponse(status=reply.status, body=dict(reply.body or {})),
                    )
                )

        result = await self.adapter.process_activity(auth, Activity().deserialize(dict(activity)), callback)
        if result is None:
            return None
        return InvokeReply(status=int(result.status), body=result.body)

    async def continue_conversation(self, reference: Mapping[str, Any], logic: TurnLogic) -> None:
        """Start a proactive turn in the referenced conversation (replies thread under its message)."""
        if not self.auth_enabled:
            # References come from activities already checked, but they travel through the
            # worker queue: unauthenticated, a proactive message still goes to loopback only.
            self._check_endorsed(reference.get("serviceUrl"), None)
        ref = ConversationReference().deserialize(dict(reference))

        async def callback(context: TurnContext) -> None:
            _no_redirects(context)
            if ref.activity_id:
                # Replies chain to the message the reference was taken from (the thread in a
                # channel) instead of to the synthetic continuation event.
                context.activity.id = ref.activity_id
            await logic(_Turn(context, context.activity.serialize()))

        await self.adapter.continue_conversation(ref, callback, bot_app_id=self.config.app_id)
