"""Who may see what: a conversation and an asker map to the access groups a Question carries.

The core decides this, not the chat adapters: they only report where a message came from.
By default a public channel sees public documents only; configured channels or teams add
their groups; in a private chat (DM, personal chat) the asker's own groups apply too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.types import PUBLIC


@dataclass(frozen=True)
class AccessResolver:
    """Maps ``platform:conversation`` and ``platform:user`` keys to access groups.

    Keys are like ``slack:C0123`` / ``teams:19:abc@thread.tacv2`` for conversations and
    ``slack:U0123`` / ``teams:<aad-object-id>`` for users; ``*`` as the id matches every one.
    """

    channel_groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    user_groups: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def groups_for(
        self, *, platform: str, conversation: str, user: str, private_chat: bool,
        directory_groups: frozenset[str] = frozenset(), verified: bool = True,
    ) -> frozenset[str]:
        """The groups a question asked here may see.

        ``directory_groups`` are groups the platform itself reports for the user (Slack user
        groups, AAD groups), mapped by the caller to group names; they count only in a
        private chat, where nobody else reads the answer.

        ``verified=False`` says the platform did not authenticate the message (Teams in local
        testing mode), so its conversation and user ids are only claims: public knowledge only.
        """
        if not verified:
            return frozenset({PUBLIC})
        groups = {PUBLIC}
        groups |= self.channel_groups.get(f"{platform}:{conversation}", frozenset())
        groups |= self.channel_groups.get(f"{platform}:*", frozenset())
        if private_chat:
            groups |= self.user_groups.get(f"{platform}:{user}", frozenset())
            groups |= self.user_groups.get(f"{platform}:*", frozenset())
            groups |= directory_groups
        return frozenset(groups)
