"""Zendesk Help Center articles, through the REST API (plain httpx; zenpy would add a large
dependency for one list endpoint).

``GET /api/v2/help_center[/{locale}]/articles.json?page[size]=100`` with cursor pagination
(``meta.has_more`` and ``links.next``). The listing carries each article's body, so a changed
article (by ``updated_at``, the marker) needs no second request. Drafts are skipped.
Authentication: Basic ``{email}/token:{api_token}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.ports import RemoteItem
from bot.types import Document
from knowledge.connectors.base import ConnectorContext, html_to_markdown, markdown_bytes
from knowledge.connectors.confluence import basic_auth
from knowledge.loaders import load_bytes


class ZendeskConnector:
    """Options: ``url`` (https://yourcompany.zendesk.com), optional ``locale``.
    Credentials: SUPPORTBOT_ZENDESK_EMAIL and SUPPORTBOT_ZENDESK_API_TOKEN."""

    kind = "zendesk"

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.base = ctx.option("url").rstrip("/")
        self.locale = ctx.options.get("locale") or ""

    def _headers(self) -> dict[str, str]:
        email = self.ctx.credential("zendesk_email", "SUPPORTBOT_ZENDESK_EMAIL")
        token = self.ctx.credential("zendesk_api_token", "SUPPORTBOT_ZENDESK_API_TOKEN")
        return {"authorization": basic_auth(f"{email}/token", token), "accept": "application/json"}

    def items(self) -> Iterator[RemoteItem]:
        """Every published article, with ``updated_at`` as the marker and its body as payload."""
        path = f"/api/v2/help_center/{self.locale + '/' if self.locale else ''}articles.json"
        url: str | None = self.base + path
        params: dict[str, str | int] | None = {"page[size]": 100}
        while url:
            page: Any = self.ctx.fetcher.get(url, headers=self._headers(), params=params).json()
            for article in page.get("articles") or []:
                if article.get("draft"):
                    continue
                yield RemoteItem(
                    str(article["id"]),
                    marker=str(article.get("updated_at") or "") or None,
                    url=str(article.get("html_url") or f"{self.base}/hc/articles/{article['id']}"),
                    title=str(article.get("title") or ""),
                    payload=article,
                )
            meta, links = page.get("meta") or {}, page.get("links") or {}
            url = links.get("next") if meta.get("has_more") else None
            params = None

    def load(self, item: RemoteItem) -> list[Document]:
        """The article body (from the listing) as Markdown under its title."""
        article = item.payload or {}
        return load_bytes(
            markdown_bytes(html_to_markdown(str(article.get("body") or ""), item.title)),
            name=f"{item.external_id}.md",
            url=item.url,
            source=self.ctx.source,
            content_type="text/markdown",
            access=self.ctx.access,
        )
