"""Confluence Cloud pages of one space, through the REST API v2 (plain httpx: the official
clients pull in far more than the three endpoints used here).

``GET /wiki/api/v2/spaces?keys=KEY`` finds the space id, ``GET /wiki/api/v2/spaces/{id}/pages``
lists its pages (cursor pagination through ``_links.next``) with their version numbers, the change
marker, and ``GET /wiki/api/v2/pages/{id}?body-format=storage`` fetches a changed page.
Authentication: Basic with the account's e-mail and an API token.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

from bot.errors import SourceError
from bot.ports import RemoteItem
from bot.types import Document
from knowledge.connectors.base import ConnectorContext, html_to_markdown, markdown_bytes
from knowledge.loaders import load_bytes


def basic_auth(user: str, secret: str) -> str:
    """An ``Authorization: Basic`` header value."""
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


class ConfluenceConnector:
    """Options: ``url`` (https://yourcompany.atlassian.net), ``space`` (the space key).
    Credentials: SUPPORTBOT_CONFLUENCE_EMAIL and SUPPORTBOT_CONFLUENCE_API_TOKEN."""

    kind = "confluence"

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.base = ctx.option("url").rstrip("/")
        self.space = ctx.option("space")
        self.page_size = ctx.int_option("page_size", 250)

    def _headers(self) -> dict[str, str]:
        email = self.ctx.credential("confluence_email", "SUPPORTBOT_CONFLUENCE_EMAIL")
        token = self.ctx.credential("confluence_api_token", "SUPPORTBOT_CONFLUENCE_API_TOKEN")
        return {"authorization": basic_auth(email, token), "accept": "application/json"}

    def _get(self, path_or_url: str, params: dict[str, str | int] | None = None) -> Any:
        url = path_or_url if path_or_url.startswith("http") else self.base + path_or_url
        return self.ctx.fetcher.get(url, headers=self._headers(), params=params).json()

    def items(self) -> Iterator[RemoteItem]:
        """Every current page of the space, with its version number as the marker."""
        spaces = self._get("/wiki/api/v2/spaces", {"keys": self.space}).get("results") or []
        if not spaces:
            raise SourceError(self.base, f"no Confluence space with key {self.space!r} (or no access to it)")
        space_id = spaces[0]["id"]
        url: str | None = f"/wiki/api/v2/spaces/{space_id}/pages"
        params: dict[str, str | int] | None = {"limit": self.page_size, "status": "current"}
        while url:
            page = self._get(url, params)
            links = page.get("_links") or {}
            web_base = links.get("base") or f"{self.base}/wiki"
            for result in page.get("results") or []:
                version = result.get("version") or {}
                webui = (result.get("_links") or {}).get("webui") or f"/pages/{result['id']}"
                yield RemoteItem(
                    str(result["id"]),
                    marker=f"{version.get('number', '')}:{version.get('createdAt', '')}",
                    url=web_base + webui,
                    title=str(result.get("title") or ""),
                )
            nxt = links.get("next")
            # ``next`` is relative to the site (it starts with /wiki/api/v2/...), cursor included.
            url, params = (urljoin(self.base + "/", nxt), None) if nxt else (None, None)

    def load(self, item: RemoteItem) -> list[Document]:
        """The page's storage-format body, as Markdown under its title."""
        page = self._get(f"/wiki/api/v2/pages/{item.external_id}", {"body-format": "storage"})
        html = ((page.get("body") or {}).get("storage") or {}).get("value") or ""
        title = str(page.get("title") or item.title)
        return load_bytes(
            markdown_bytes(html_to_markdown(html, title)),
            name=f"{item.external_id}.md",
            url=item.url,
            source=self.ctx.source,
            content_type="text/markdown",
            access=self.ctx.access,
        )
