"""When ``/api/messages`` is served, and where the bot may send its replies.

Three modes, decided once from the settings (:func:`teams_mode`):

* ``authenticated`` — ``MicrosoftAppId`` is set: every request needs a Bot Framework token,
  and replies go only to the ``serviceUrl`` that token endorses.
* ``local`` — no app id, but ``SUPPORTBOT_TEAMS_ALLOW_UNAUTHENTICATED=true``: for the Bot
  Framework Emulator on this machine. ``serve`` refuses any bind but loopback
  (:func:`check_bind`), replies go only to loopback ``serviceUrl``\\ s, and the identity an
  activity claims is not believed (askers see public knowledge only and are never admins).
* ``off`` — neither: the endpoint does not exist (404).

Pure functions, no SDK import: the gateway, the router, the web app and the CLI share them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from bot.errors import ConfigError

if TYPE_CHECKING:
    from adapters.settings import Settings

TeamsMode = Literal["authenticated", "local", "off"]

OPT_IN = "SUPPORTBOT_TEAMS_ALLOW_UNAUTHENTICATED"

# Characters that parse differently in different URL parsers (userinfo, backslashes, spaces):
# a serviceUrl with any of them is refused rather than interpreted.
_AMBIGUOUS = re.compile(r"[@\\\s\x00-\x1f\x7f]")


def teams_mode(settings: Settings) -> TeamsMode:
    """Which mode the Teams endpoint runs in for these settings (see the module docstring)."""
    if settings.microsoft_app_id:
        return "authenticated"
    if settings.teams_allow_unauthenticated:
        return "local"
    return "off"


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a bind address or a URL's host) is this machine only: 127.0.0.0/8, ::1, localhost."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: object) -> bool:
    """Whether ``url`` is a plain ``http(s)://`` URL whose host is loopback (no userinfo, no tricks)."""
    if not isinstance(url, str) or not url or _AMBIGUOUS.search(url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and is_loopback_host(parts.hostname or "")


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to serve the unauthenticated Teams endpoint on anything but a loopback address."""
    if teams_mode(settings) == "local" and not is_loopback_host(host):
        raise ConfigError(
            f"{OPT_IN}=true serves /api/messages without authentication, so it only runs on a loopback "
            f"address (127.0.0.1, ::1, localhost), not on {host!r}. Bind to 127.0.0.1 for the Bot Framework "
            "Emulator, or set MicrosoftAppId and MicrosoftAppPassword to serve Teams with authentication."
        )


def startup_line(mode: TeamsMode, app_id: str = "") -> str:
    """The log line that says what the Teams endpoint does in ``mode`` (an info line in every mode)."""
    if mode == "authenticated":
        return f"Teams: POST /api/messages, tokens validated for app {app_id}"
    if mode == "local":
        return (
            f"Teams: local testing mode ({OPT_IN}=true): POST /api/messages accepts unauthenticated "
            "activities on this loopback address; replies go only to loopback serviceUrls; askers see "
            "public knowledge only and are never admins"
        )
    return (
        "Teams: off (no MicrosoftAppId set): /api/messages is not served. Set MicrosoftAppId and "
        f"MicrosoftAppPassword to connect Teams, or {OPT_IN}=true to try the Bot Framework Emulator locally"
    )
