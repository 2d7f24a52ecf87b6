"""Links taken from documents, made honest before any chat renders them.

A document can carry a Markdown link whose text names one place and whose target is another
(``[https://sso.company.example/reset](https://evil.example/phish)``); quoted in an answer, or as
a citation title, Slack, Teams and the web chat would show the trusted-looking text. The rules,
applied once here and used by every renderer:

- only ``http``/``https`` targets with a host are links; anything else shows as plain text;
- a link's text may not be a URL or a host name other than its target's: such text is replaced
  by the target itself (``evil.example/phish``);
- the renderers show the target's host beside any link text that comes from a document
  (``Reset your password (evil.example)``), so the reader always sees where a link goes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

MARKDOWN_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
"""``[text](target)`` as the answers' small Markdown subset writes a link."""

# Text that reads as an address: a scheme, "www.", or a dotted host name (optionally with a port
# and a path) with an alphabetic last label — "sso.company.example/reset", "10.0.0.1:8080".
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_HOSTLIKE = re.compile(
    r"^(?:www\.)?(?P<host>(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:[a-z][a-z0-9-]*[a-z0-9]|\d{1,3}))"
    r"(?::\d+)?(?:[/?#]\S*)?$",
    re.IGNORECASE,
)
_MAX_SHOWN_URL = 80


@dataclass(frozen=True)
class Link:
    """A link ready to render: ``text`` to show, ``url`` to open ("" when it can't be a link), and
    ``host``, the target's host, to show beside ``text``."""

    text: str
    url: str
    host: str


def web_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host, else "" (file paths, ``javascript:``, junk)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return url.strip()


def host_of(url: str) -> str:
    """The lower-case host name of an http(s) URL ("" when it has none)."""
    try:
        return (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def named_host(text: str) -> str | None:
    """The host ``text`` names when it reads as a URL or a host name, else None."""
    text = text.strip().strip("<>")
    if not text or any(c.isspace() for c in text):
        return None
    if _SCHEME.match(text):
        return host_of(text) or text.lower()
    match = _HOSTLIKE.match(text)
    return match.group("host").lower().rstrip(".") if match else None


def _same_site(a: str, b: str) -> bool:
    def bare(host: str) -> str:
        return host[4:] if host.startswith("www.") else host

    return bare(a) == bare(b)


def shown_url(url: str) -> str:
    """A URL as text: without the scheme, shortened to a readable length."""
    text = re.sub(r"^https?://", "", url, flags=re.IGNORECASE)
    return text if len(text) <= _MAX_SHOWN_URL else text[: _MAX_SHOWN_URL - 1] + "…"


def safe_link(text: str, url: str) -> Link:
    """The link ``[text](url)`` made honest: not a link unless the target is http(s); text that
    names another host than the target's is replaced by the target."""
    target = web_url(url)
    if not target:
        return Link(text, "", "")
    host = host_of(target)
    named = named_host(text)
    if named is not None and not _same_site(named, host):
        text = shown_url(target)
    return Link(text, target, host)


def replace_links(text: str, render: Callable[[Link], str]) -> str:
    """``text`` with every Markdown link replaced by ``render(safe_link(...))``."""
    return MARKDOWN_LINK.sub(lambda m: render(safe_link(m.group(1), m.group(2))), text)


def markdown_link(link: Link) -> str:
    """A safe link back in the answers' Markdown (``[text](url)``; the text alone when not a link)."""
    if not link.url:
        return link.text
    return f"[{link.text}]({link.url})"


def honest_markdown(text: str) -> str:
    """``text`` with its Markdown links made honest (same Markdown, safe text and targets)."""
    return replace_links(text, markdown_link)
