"""Slack user groups as access groups: ``{"S0123ABC": ["staff", "hr"]}`` in the settings.

Only the configured user groups are asked about (``usergroups.users.list`` for each), and
their member lists are cached for ``ttl_s``: a DM question costs no Slack call most of the
time. A user group Slack won't list (deleted, missing ``usergroups:read``) grants nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

log = logging.getLogger(__name__)


class SlackUserGroups:
    """``directory(user_id)`` → the access groups the user's Slack user groups map to."""

    def __init__(
        self,
        client: WebClient,
        mapping: Mapping[str, Sequence[str]],
        *,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.mapping = {k: frozenset(v) for k, v in mapping.items()}
        self.ttl_s = ttl_s
        self.clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def members(self, usergroup: str) -> frozenset[str]:
        now = self.clock()
        with self._lock:
            cached = self._members.get(usergroup)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            users = frozenset(str(u) for u in self.client.usergroups_users_list(usergroup=usergroup).get("users") or [])
        except SlackClientError as exc:
            log.warning("Slack user group %s could not be listed: %s", usergroup, type(exc).__name__)
            return frozenset()  # fail closed: a DM then sees what its configured groups allow
        with self._lock:
            self._members[usergroup] = (now + self.ttl_s, users)
        return users

    def __call__(self, user: str) -> frozenset[str]:
        groups: set[str] = set()
        for usergroup, mapped in self.mapping.items():
            if user in self.members(usergroup):
                groups |= mapped
        return frozenset(groups)
