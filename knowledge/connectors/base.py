"""What every connector provides, and the helpers they share.

A connector lists a source cheaply (ids and a change marker per item, e.g. a version number or
an updated time) and loads only the items the sync asks for: the sync engine
(:mod:`knowledge.sources`) skips items whose marker it has already ingested, so an unchanged
source costs one listing and no fetching, parsing or embedding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser

from bot.errors import ConfigError
from bot.types import PUBLIC
from knowledge.fetch import Fetcher


@dataclass(frozen=True)
class ConnectorContext:
    """What a connector is built with: the source's name and options, a fetcher and the credentials."""

    source: str
    options: Mapping[str, str]
    fetcher: Fetcher
    credentials: Mapping[str, str] = field(default_factory=dict)
    access: tuple[str, ...] = (PUBLIC,)
    max_bytes: int = 50 << 20

    def option(self, name: str, default: str | None = None) -> str:
        """A required option (or its default); a missing one is a ConfigError saying how to set it."""
        value = self.options.get(name, default)
        if value is None or value == "":
            raise ConfigError(
                f"source {self.source!r} needs the option {name} (supportbot sources add ... -o {name}=...)"
            )
        return value

    def int_option(self, name: str, default: int) -> int:
        """An integer option; a malformed one is a ConfigError."""
        raw = self.options.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(
                f"source {self.source!r}: option {name} must be a whole number, not {raw!r}"
            ) from None

    def credential(self, name: str, setting: str) -> str:
        """A required credential; missing, the error names the environment variable to set."""
        value = self.credentials.get(name)
        if not value:
            raise ConfigError(f"source {self.source!r} needs {setting} to be set in the environment")
        return value


# --- HTML (API bodies) to Markdown ---------------------------------------------------------------
# API bodies (Confluence storage format, Zendesk articles) are clean HTML fragments: converting
# them to Markdown keeps their headings for the chunker, where a boilerplate-removing extractor
# meant for whole web pages may drop short articles altogether.

_BLOCK = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "table",
        "tr",
        "ul",
        "ol",
        "pre",
        "blockquote",
        "br",
        "hr",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "dt",
        "dd",
    }
)
_SKIP = frozenset({"script", "style", "head", "title", "noscript", "template"})


class _ToMarkdown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" | ")
        elif tag == "pre":
            self.pre += 1
            self.out.append("\n\n```\n")
        elif tag in _BLOCK:
            self.out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.out.append("\n```\n\n")
        elif tag in _BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_markdown(html: str, title: str = "") -> str:
    """Markdown for an HTML fragment: headings become ``#`` lines, blocks become paragraphs."""
    parser = _ToMarkdown()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    text = "\n".join(line.strip() if not line.startswith("    ") else line for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return f"# {title}\n\n{text}" if title else text


def markdown_bytes(markdown: str) -> bytes:
    """UTF-8 bytes of Markdown, for ``load_bytes(..., content_type="text/markdown")``."""
    return markdown.encode("utf-8")
