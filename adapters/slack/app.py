"""The Slack app: a bolt ``App`` with supportbot's listeners, registered per concern.

This package only translates; the conversation itself (limits, access, admins, votes,
``/ingest``, every sentence) is :class:`bot.conversation.Conversation`. Listeners
acknowledge first (events are acknowledged by bolt itself) and then work on bolt's
listener thread pool, so Slack always gets its response within 3 seconds.

Modules::

    inbound.py    Slack payloads → typed values (parsed once)
    messages.py   app_mention, message  → an answer in the thread (deduplicated via SlackState)
    feedback.py   reaction_added, vote buttons, "what was wrong" modal → votes
    commands.py   /ask, "Share in channel", /ingest (the worker reports back: notify.py)
    verified.py   ✅ on an expert's reply, "Use as answer", "Answer this"
    delivery.py   streaming and posting answers
    render.py     Block Kit

Built by the composition root (``adapters.factory.Services.slack_bot``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from adapters.slack import commands, feedback, messages
from adapters.slack.delivery import Delivery
from adapters.slack.state import SlackState
from adapters.slack.verified import SlackVerified
from bot.conversation import (
    FIRST_UPDATE_AFTER_S,
    UPDATE_INTERVAL_S,
    AdminConfirm,
    Cadence,
    ChatMessage,
    Conversation,
)
from bot.types import Platform
from bot.verified import VerifiedService

if TYPE_CHECKING:
    from adapters.settings import Settings

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 10  # each waits Retry-After: a 429 delays an answer, it never drops it


@dataclass(frozen=True)
class SlackOptions:
    """How the Slack app behaves; the timing knobs default to the core's cadence."""

    socket_mode: bool = False  # Socket Mode messages come over an authenticated websocket: nothing to sign
    streaming: bool = True  # show slow answers while they are written
    first_update_after_s: float = FIRST_UPDATE_AFTER_S
    update_interval_s: float = UPDATE_INTERVAL_S
    admin_group: str | None = None  # a Slack user group whose members are admins too
    workers: int = 16  # bolt's listener thread pool


def make_client(token: str, base_url: str = "https://slack.com/api/", *, timeout: int = 30) -> WebClient:
    """A WebClient aimed at ``base_url`` (GovSlack, a proxy, a test server) that waits out 429s."""
    if not base_url.endswith("/"):
        base_url += "/"
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(),
            RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
    )


def ensure_rate_limit_retries(client: WebClient) -> WebClient:
    """Add a RateLimitErrorRetryHandler to an injected client that lacks one."""
    if not any(isinstance(h, RateLimitErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES))
    return client


class SlackBot:
    """The bolt App with supportbot's listeners; ``.app`` is what the HTTP and Socket Mode runners drive.

    Everything it talks to is passed in: the core's :class:`Conversation`, the WebClient
    (aimed at the configured Slack API URL), the SlackState used for dedup and look-ups, and
    optionally a directory of Slack user groups and the verified-answers service.
    """

    def __init__(
        self,
        conversation: Conversation,
        client: WebClient,
        state: SlackState,
        *,
        signing_secret: str | None,
        options: SlackOptions | None = None,
        directory: Callable[[str], frozenset[str]] | None = None,
        verified: VerifiedService | None = None,
    ) -> None:
        self.conversation = conversation
        self.options = options = options or SlackOptions()
        self.client = ensure_rate_limit_retries(client)
        self.state = state
        self.directory = directory  # a DM asker's Slack user groups → access groups
        self._executor = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="slack-listener")
        self.app = App(
            client=self.client,
            signing_secret=signing_secret,
            request_verification_enabled=not options.socket_mode,
            # auth.test runs on the first request instead: constructors have no side effects.
            token_verification_enabled=False,
            listener_executor=self._executor,
            logger=logging.getLogger("slack_bolt.supportbot"),
        )
        # Experts' replies marked as answers (✅, "Use as answer", "Answer this"): adapters/slack/verified.py
        self.verified = None if verified is None else SlackVerified(self, verified)
        self.delivery = Delivery(
            self.client,
            state,
            streaming=options.streaming,
            cadence=lambda: Cadence(options.first_update_after_s, options.update_interval_s),
            extra_actions=(lambda answer: []) if self.verified is None else self.verified.extra_actions,
        )
        if self.verified is not None:
            self.verified.register(self.app)
        messages.register(self.app, self)
        feedback.register(self.app, self)
        commands.register(self.app, self)
        self.app.error(self._on_error)

    def close(self) -> None:
        """Let running listeners finish."""
        self._executor.shutdown(wait=True, cancel_futures=False)

    def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        # Only what identifies the request: never the payload's tokens or response_url.
        kind = body.get("type") or body.get("command") or "request"
        log.error("Slack %s failed: %s: %s", kind, type(error).__name__, error)

    # -- what the listeners share --------------------------------------------------------------
    def directory_for(self, user: str) -> Callable[[], frozenset[str]] | None:
        """The asker's Slack user groups as access groups (the core asks only in a DM)."""
        directory = self.directory
        return None if directory is None or not user else (lambda: directory(user))

    def admin_confirm(self, user: str) -> AdminConfirm | None:
        """Membership of the admin user group, for an asker not listed by id (a Slack call)."""
        group = self.options.admin_group
        if not group:
            return None

        def member(_: frozenset[str]) -> bool:
            return user in (self.client.usergroups_users_list(usergroup=group).get("users") or [])

        return member

    def is_listed_admin(self, user: str) -> bool:
        """Listed in SLACK_ADMINS (no Slack call)."""
        return self.conversation.is_admin(ChatMessage(Platform.SLACK, user, "", "", private=False))

    def is_admin(self, user: str) -> bool:
        """Listed, or a member of the admin user group."""
        return self.conversation.is_admin(
            ChatMessage(Platform.SLACK, user, "", "", private=False), self.admin_confirm(user)
        )

    @staticmethod
    def team(body: dict[str, Any], context: BoltContext) -> str:
        return str(context.team_id or body.get("team_id") or (body.get("event") or {}).get("team") or "")


def resolve_mode(settings: Settings) -> str:
    """``socket`` or ``http``: ``auto`` means Socket Mode when an app-level token is set."""
    if settings.slack_mode == "auto":
        return "socket" if settings.slack_app_token is not None else "http"
    return settings.slack_mode
