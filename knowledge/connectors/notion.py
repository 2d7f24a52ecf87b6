"""Notion pages shared with the integration, through the REST API (plain httpx).

``POST /v1/search`` (filter: pages) lists them with cursor pagination (``has_more``,
``next_cursor``) and their ``last_edited_time``, the marker; ``GET /v1/blocks/{id}/children``
(paginated the same way) reads a changed page's blocks, nested ones included, into Markdown.
Headers: ``Authorization: Bearer`` and ``Notion-Version``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.ports import RemoteItem
from bot.types import Document
from knowledge.connectors.base import ConnectorContext, markdown_bytes
from knowledge.loaders import load_bytes

NOTION_VERSION = "2022-06-28"
_PREFIX = {
    "heading_1": "# ",
    "heading_2": "## ",
    "heading_3": "### ",
    "bulleted_list_item": "- ",
    "numbered_list_item": "1. ",
    "to_do": "- [ ] ",
    "quote": "> ",
    "callout": "> ",
    "toggle": "",
    "paragraph": "",
}


def _plain(rich: list[dict[str, Any]] | None) -> str:
    return "".join(str(part.get("plain_text") or "") for part in rich or [])


def page_title(page: dict[str, Any]) -> str:
    """The text of a page's title property."""
    for prop in (page.get("properties") or {}).values():
        if isinstance(prop, dict) and prop.get("type") == "title":
            return _plain(prop.get("title"))
    return ""


class NotionConnector:
    """Options: ``api_url`` (default https://api.notion.com). Credential: SUPPORTBOT_NOTION_TOKEN."""

    kind = "notion"
    max_depth = 3

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.api = (ctx.options.get("api_url") or "https://api.notion.com").rstrip("/")

    def _headers(self) -> dict[str, str]:
        token = self.ctx.credential("notion_token", "SUPPORTBOT_NOTION_TOKEN")
        return {
            "authorization": f"Bearer {token}",
            "notion-version": NOTION_VERSION,
            "accept": "application/json",
        }

    def items(self) -> Iterator[RemoteItem]:
        """Every page the integration can see, except archived ones."""
        cursor: str | None = None
        while True:
            body: dict[str, Any] = {"filter": {"property": "object", "value": "page"}, "page_size": 100}
            if cursor:
                body["start_cursor"] = cursor
            page = self.ctx.fetcher.get(
                f"{self.api}/v1/search", method="POST", json_body=body, headers=self._headers()
            ).json()
            for result in page.get("results") or []:
                if result.get("archived") or result.get("in_trash"):
                    continue
                yield RemoteItem(
                    str(result["id"]),
                    marker=str(result.get("last_edited_time") or "") or None,
                    url=str(result.get("url") or ""),
                    title=page_title(result),
                )
            cursor = page.get("next_cursor") if page.get("has_more") else None
            if not cursor:
                return

    def _blocks(self, block_id: str, depth: int) -> Iterator[str]:
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"page_size": 100}
            if cursor:
                params["start_cursor"] = cursor
            page = self.ctx.fetcher.get(
                f"{self.api}/v1/blocks/{block_id}/children", headers=self._headers(), params=params
            ).json()
            for block in page.get("results") or []:
                kind = str(block.get("type") or "")
                data = block.get(kind) or {}
                text = _plain(data.get("rich_text")) if isinstance(data, dict) else ""
                if kind == "code" and text:
                    yield f"```\n{text}\n```"
                elif kind in _PREFIX and text:
                    yield _PREFIX[kind] + text
                if block.get("has_children") and depth < self.max_depth and kind != "child_page":
                    yield from self._blocks(str(block["id"]), depth + 1)
            cursor = page.get("next_cursor") if page.get("has_more") else None
            if not cursor:
                return

    def load(self, item: RemoteItem) -> list[Document]:
        """The page's blocks as Markdown under its title."""
        markdown = "\n\n".join([f"# {item.title}" if item.title else "", *self._blocks(item.external_id, 0)])
        return load_bytes(
            markdown_bytes(markdown.strip()),
            name=f"{item.external_id}.md",
            url=item.url or f"https://www.notion.so/{item.external_id.replace('-', '')}",
            source=self.ctx.source,
            content_type="text/markdown",
            access=self.ctx.access,
        )
