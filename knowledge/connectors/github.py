"""Documentation files in a GitHub repository, through the REST API (plain httpx).

``GET /repos/{owner}/{repo}`` gives the default branch,
``GET /repos/{owner}/{repo}/git/trees/{branch}?recursive=1`` lists every file with its blob sha (the marker: it changes exactly when the content does), and
``GET /repos/{owner}/{repo}/contents/{path}?ref={branch}`` with ``Accept: application/vnd.github.raw+json``
fetches a changed file. A token is optional for public repositories.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from bot.errors import ConfigError, SourceError
from bot.ports import RemoteItem
from bot.types import Document
from knowledge.connectors.base import ConnectorContext
from knowledge.loaders import SUPPORTED_SUFFIXES, load_bytes


class GitHubConnector:
    """Options: ``repo`` (owner/name), ``path`` (folder, default ``docs``; empty for all),
    ``branch`` (default: the repository's), ``api_url`` (GitHub Enterprise). Credential:
    SUPPORTBOT_GITHUB_TOKEN (optional)."""

    kind = "github"

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.repo = ctx.option("repo").strip("/")
        if self.repo.count("/") != 1:
            raise ConfigError(f"source {ctx.source!r}: repo must be owner/name, not {self.repo!r}")
        self.api = (ctx.options.get("api_url") or "https://api.github.com").rstrip("/")
        self.web = (ctx.options.get("web_url") or "https://github.com").rstrip("/")
        self.path = ctx.options.get("path", "docs").strip("/")
        self.branch = ctx.options.get("branch") or ""

    def _headers(self, accept: str = "application/vnd.github+json") -> dict[str, str]:
        headers = {"accept": accept, "x-github-api-version": "2022-11-28"}
        token = self.ctx.credentials.get("github_token")
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    def _json(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        return self.ctx.fetcher.get(self.api + path, headers=self._headers(), params=params).json()

    def items(self) -> Iterator[RemoteItem]:
        """Supported files under ``path``, with their blob sha as the marker."""
        if not self.branch:
            self.branch = str(self._json(f"/repos/{self.repo}").get("default_branch") or "main")
        tree = self._json(f"/repos/{self.repo}/git/trees/{quote(self.branch, safe='')}", {"recursive": 1})
        if tree.get("truncated"):
            # A partial listing would delete whatever it missed: refuse instead.
            raise SourceError(
                f"{self.repo}@{self.branch}",
                "the repository tree is too large to list at once; set a narrower path",
            )
        prefix = self.path + "/" if self.path else ""
        for entry in tree.get("tree") or []:
            path = str(entry.get("path") or "")
            if (
                entry.get("type") != "blob"
                or not path.startswith(prefix)
                or PurePosixPath(path).suffix.lower() not in SUPPORTED_SUFFIXES
                or any(part.startswith(".") for part in PurePosixPath(path).parts)
            ):
                continue
            yield RemoteItem(
                path,
                marker=str(entry.get("sha") or "") or None,
                url=f"{self.web}/{self.repo}/blob/{quote(self.branch)}/{quote(path)}",
                title=PurePosixPath(path).stem,
            )

    def load(self, item: RemoteItem) -> list[Document]:
        """The file's raw content, parsed by its suffix."""
        reply = self.ctx.fetcher.get(
            f"{self.api}/repos/{self.repo}/contents/{quote(item.external_id)}",
            headers=self._headers("application/vnd.github.raw+json"),
            params={"ref": self.branch},
            max_bytes=self.ctx.max_bytes,
        )
        return load_bytes(
            reply.body, name=item.external_id, url=item.url, source=self.ctx.source, access=self.ctx.access
        )
