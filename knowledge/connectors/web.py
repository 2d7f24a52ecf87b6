"""A web site: from a start URL (crawled) or a sitemap, limited to one host and a path prefix.

robots.txt is respected (its ``Crawl-delay`` too), at most ``max_pages`` pages are read, by
at most ``concurrency`` requests at a time. A sitemap's ``lastmod`` is the change marker;
crawled pages have none, so they are fetched each sync and their content hash decides whether
anything is embedded.
"""

from __future__ import annotations

import contextlib
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import PurePosixPath
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

from bot.errors import ConfigError, SourceError
from bot.ports import RemoteItem
from bot.types import PUBLIC, Document
from knowledge.connectors.base import ConnectorContext
from knowledge.fetch import Fetcher, Response, SourceGone
from knowledge.loaders import load_bytes

USER_AGENT = "supportbot"
_HTML = ("text/html", "application/xhtml+xml")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "link"):
            for name, value in attrs:
                if name == "href" and value:
                    self.links.append(value)


def page_links(base: str, html: str) -> list[str]:
    """Absolute http(s) links of a page, without fragments."""
    parser = _Links()
    with contextlib.suppress(AssertionError):  # HTMLParser on badly broken markup: keep what was found
        parser.feed(html)
    out = []
    for href in parser.links:
        url = urldefrag(urljoin(base, href.strip()))[0]
        if urlsplit(url).scheme in ("http", "https"):
            out.append(url)
    return out


def load_url(
    fetcher: Fetcher, url: str, *, source: str, access: tuple[str, ...] = (PUBLIC,)
) -> list[Document]:
    """Fetch one URL (through the SSRF rules) and load it into documents; raises SourceError."""
    reply = fetcher.get(url)
    return documents_from_response(reply, source=source, access=access, doc_url=url)


def documents_from_response(
    reply: Response, *, source: str, access: tuple[str, ...], doc_url: str | None = None
) -> list[Document]:
    """Documents of a fetched body (its content type picks the parser)."""
    name = PurePosixPath(urlsplit(reply.url).path).name or "index.html"
    return load_bytes(
        reply.body,
        name=name,
        url=doc_url or reply.url,
        source=source,
        content_type=reply.content_type,
        access=access,
    )


class WebConnector:
    """Options: ``url`` (start page, or a sitemap ending in .xml), ``prefix`` (path prefix, default
    the start URL's folder), ``max_pages`` (500), ``concurrency`` (2), ``delay_s`` (0)."""

    kind = "web"

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.start = ctx.option("url")
        parts = urlsplit(self.start)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"source {ctx.source!r}: url must be an http(s) URL, not {self.start!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.sitemap = parts.path.endswith(".xml")
        default_prefix = "/" if self.sitemap else parts.path.rsplit("/", 1)[0] + "/"
        self.prefix = ctx.options.get("prefix") or default_prefix
        self.max_pages = ctx.int_option("max_pages", 500)
        self.concurrency = max(1, min(ctx.int_option("concurrency", 2), 8))
        self.delay_s = float(ctx.options.get("delay_s") or 0)
        self._robots: RobotFileParser | None = None
        self._lock = threading.Lock()
        self._last_request = 0.0

    def in_scope(self, url: str) -> bool:
        """Same scheme and host as the start URL, under the path prefix."""
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}" == self.origin and (parts.path or "/").startswith(
            self.prefix
        )

    def robots(self) -> RobotFileParser:
        """The site's robots.txt (a missing one allows everything; an unreachable one raises)."""
        if self._robots is None:
            parser = RobotFileParser()
            try:
                reply = self.ctx.fetcher.get(self.origin + "/robots.txt", max_bytes=512 << 10)
                parser.parse(reply.text.splitlines())
            except SourceGone:
                parser.parse([])
            except SourceError as exc:
                if "access denied" in exc.reason:  # 401/403 on robots.txt: the site disallows crawling
                    parser.parse(["User-agent: *", "Disallow: /"])
                else:
                    raise
            delay = parser.crawl_delay(USER_AGENT)
            if delay:
                self.delay_s = max(self.delay_s, float(delay))
            self._robots = parser
        return self._robots

    def allowed(self, url: str) -> bool:
        return self.in_scope(url) and self.robots().can_fetch(USER_AGENT, url)

    def _polite_get(self, url: str) -> Response:
        if self.delay_s:
            with self._lock:  # one request per delay_s across the pool
                wait = self._last_request + self.delay_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._last_request = time.monotonic()
        return self.ctx.fetcher.get(url)

    def items(self) -> Iterator[RemoteItem]:
        """Sitemap entries, or the pages found by crawling from the start URL."""
        if self.sitemap:
            yield from self._sitemap_items()
        else:
            yield from self._crawl()

    def _sitemap_items(self) -> Iterator[RemoteItem]:
        seen: set[str] = set()
        pending = [self.start]
        while pending and len(seen) < self.max_pages:
            reply = self.ctx.fetcher.get(pending.pop(0))
            try:
                root = ET.fromstring(reply.body)
            except ET.ParseError:
                raise SourceError(reply.url, "the sitemap is not valid XML") from None
            ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            if root.tag.endswith("sitemapindex"):
                pending += [
                    loc.text.strip()
                    for loc in root.iter(f"{ns}loc")
                    if loc.text and urlsplit(loc.text.strip()).netloc == urlsplit(self.origin).netloc
                ]
                continue
            for entry in root.iter(f"{ns}url"):
                loc = entry.findtext(f"{ns}loc", "").strip()
                if not loc or loc in seen or not self.allowed(loc):
                    continue
                seen.add(loc)
                yield RemoteItem(loc, marker=entry.findtext(f"{ns}lastmod") or None, url=loc)
                if len(seen) >= self.max_pages:
                    break

    def _crawl(self) -> Iterator[RemoteItem]:
        if not self.allowed(self.start):
            raise SourceError(self.start, "robots.txt disallows the start URL (or it is outside the prefix)")
        seen = {self.start}
        frontier = [self.start]
        count = 0
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="crawl") as pool:
            while frontier and count < self.max_pages:
                batch, frontier = frontier[: self.max_pages - count], []
                for url, result in zip(batch, pool.map(self._fetch_page, batch), strict=True):
                    count += 1
                    if isinstance(result, SourceGone):
                        continue  # a dead link: nothing to index (and an indexed copy is removed)
                    if isinstance(result, SourceError):
                        yield RemoteItem(url, url=url, error=result.reason)
                        continue
                    yield RemoteItem(url, marker=None, url=url, payload=result)
                    if (result.content_type or "").split(";")[0].strip() in _HTML:
                        for link in page_links(result.url, result.text):
                            if link not in seen and self.allowed(link):
                                seen.add(link)
                                frontier.append(link)

    def _fetch_page(self, url: str) -> Response | SourceError:
        try:
            reply = self._polite_get(url)
        except SourceError as exc:
            return exc
        if not self.in_scope(reply.url):  # redirected off the site or out of the prefix
            return SourceGone(url, f"redirects outside the source to {reply.url}")
        return reply

    def load(self, item: RemoteItem) -> list[Document]:
        """The page's documents: from the crawl's payload, or fetched now (sitemap entries)."""
        reply = item.payload if isinstance(item.payload, Response) else self._polite_get(item.external_id)
        return documents_from_response(
            reply, source=self.ctx.source, access=self.ctx.access, doc_url=item.external_id
        )
