"""Azure AD groups as access groups: ``{"<aad group object id>": ["hr"]}`` in the settings.

Teams activities carry the asker's AAD object id but not their groups, so membership comes
from Microsoft Graph: ``POST /users/{id}/checkMemberGroups`` with only the configured group
ids (transitive membership, one call), authenticated with the bot's own app credentials
(client credentials grant; the app needs ``GroupMember.Read.All``). Results are cached per
user for ``ttl_s``. Any failure grants nothing (fail closed): the asker then sees what the
configuration (``access_user_groups``) allows.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import httpx

from adapters.teams.activity import Incoming
from bot.errors import ConfigError, ProviderUnavailable

if TYPE_CHECKING:
    from adapters.settings import Settings

log = logging.getLogger(__name__)

_OBJECT_ID = re.compile(r"[0-9A-Za-z-]{1,64}")  # AAD object ids are GUIDs; never a path


class GraphGroups:
    """``directory(incoming)`` → access groups from the asker's AAD groups, via Microsoft Graph."""

    def __init__(
        self,
        mapping: Mapping[str, Sequence[str]],
        *,
        app_id: str,
        app_password: str,
        tenant_id: str,
        graph_url: str = "https://graph.microsoft.com/v1.0/",
        login_url: str = "https://login.microsoftonline.com/",
        client: httpx.Client | None = None,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mapping = {k: frozenset(v) for k, v in mapping.items()}
        self._app_id, self._password, self._tenant = app_id, app_password, tenant_id
        self._graph = graph_url.rstrip("/") + "/"
        self._login = login_url.rstrip("/") + "/"
        self._client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self._token: tuple[float, str] | None = None
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=5.0)
        return self._client

    def _access_token(self) -> str:
        now = self.clock()
        if self._token is not None and self._token[0] > now:
            return self._token[1]
        reply = self._http().post(
            f"{self._login}{self._tenant}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self._app_id,
                "client_secret": self._password,
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        if reply.status_code != 200:
            # The reply may echo the request; only the status is safe to report.
            raise ProviderUnavailable(f"Microsoft login refused the app credentials (HTTP {reply.status_code})")
        body = reply.json()
        token = str(body.get("access_token") or "")
        if not token:
            raise ProviderUnavailable("Microsoft login sent no access token")
        self._token = (now + max(60.0, float(body.get("expires_in") or 3600)) - 60.0, token)
        return token

    def member_groups(self, aad_user: str) -> frozenset[str]:
        """The configured AAD group ids ``aad_user`` belongs to (transitively)."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(aad_user)
            if cached is not None and cached[0] > now:
                return cached[1]
            reply = self._http().post(
                f"{self._graph}users/{aad_user}/checkMemberGroups",
                json={"groupIds": sorted(self.mapping)},
                headers={"Authorization": f"Bearer {self._access_token()}"},
            )
            if reply.status_code != 200:
                raise ProviderUnavailable(f"Microsoft Graph checkMemberGroups failed (HTTP {reply.status_code})")
            value = reply.json().get("value")
            ids = frozenset(str(v) for v in value if str(v) in self.mapping) if isinstance(value, list) else frozenset()
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[aad_user] = (now + self.ttl_s, ids)
            return ids

    def __call__(self, inc: Incoming) -> frozenset[str]:
        if not inc.user_aad or not self.mapping or not _OBJECT_ID.fullmatch(inc.user_aad):
            return frozenset()
        groups: set[str] = set()
        for group_id in self.member_groups(inc.user_aad):
            groups |= self.mapping.get(group_id, frozenset())
        return frozenset(groups)


def directory_for(settings: Settings) -> GraphGroups:
    """The Graph directory for ``teams_aad_groups``; needs the bot's app id, password and tenant."""
    password = settings.microsoft_app_password.get_secret_value() if settings.microsoft_app_password else ""
    if not (settings.microsoft_app_id and password and settings.microsoft_app_tenant_id):
        raise ConfigError(
            "SUPPORTBOT_TEAMS_AAD_GROUPS needs MicrosoftAppId, MicrosoftAppPassword and MicrosoftAppTenantId"
        )
    return GraphGroups(
        settings.teams_aad_groups,
        app_id=settings.microsoft_app_id,
        app_password=password,
        tenant_id=settings.microsoft_app_tenant_id,
        graph_url=settings.graph_url,
        login_url=settings.microsoft_login_url,
    )
