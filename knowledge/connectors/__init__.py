"""Connectors: how each kind of source is listed and loaded (see :mod:`knowledge.connectors.base`)."""

from __future__ import annotations

from collections.abc import Callable

from bot.errors import ConfigError
from bot.ports import Connector, RemoteItem
from knowledge.connectors.base import ConnectorContext

__all__ = ["KINDS", "Connector", "ConnectorContext", "RemoteItem", "make_connector"]


def _folder(ctx: ConnectorContext) -> Connector:
    from knowledge.connectors.folder import FolderConnector

    return FolderConnector(ctx)


def _web(ctx: ConnectorContext) -> Connector:
    from knowledge.connectors.web import WebConnector

    return WebConnector(ctx)


def _confluence(ctx: ConnectorContext) -> Connector:
    from knowledge.connectors.confluence import ConfluenceConnector

    return ConfluenceConnector(ctx)


def _zendesk(ctx: ConnectorContext) -> Connector:
    from knowledge.connectors.zendesk import ZendeskConnector

    return ZendeskConnector(ctx)


def _github(ctx: ConnectorContext) -> Connector:
    from knowledge.connectors.github import GitHubConnector

    return GitHubConnector(ctx)


def _notion(ctx: ConnectorContext) -> Connector:
    from knowledge.connectors.notion import NotionConnector

    return NotionConnector(ctx)


KINDS: dict[str, Callable[[ConnectorContext], Connector]] = {
    "folder": _folder,
    "web": _web,
    "confluence": _confluence,
    "zendesk": _zendesk,
    "github": _github,
    "notion": _notion,
}
"""Kind name -> constructor."""

MAIN_OPTION = {
    "folder": "path",
    "web": "url",
    "confluence": "url",
    "zendesk": "url",
    "github": "repo",
    "notion": "api_url",
}
"""The option the CLI's positional TARGET sets, per kind."""


def make_connector(kind: str, ctx: ConnectorContext) -> Connector:
    """Build the connector for ``kind``; an unknown kind or a bad option is a ConfigError."""
    try:
        factory = KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown source kind {kind!r}; choose one of {', '.join(KINDS)}") from None
    return factory(ctx)
