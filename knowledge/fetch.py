"""Fetch URLs safely: the one way anything in supportbot reads from the network on a source's behalf.

The rules (server-side request forgery protection), checked before every request and again on
every redirect:

- only ``http`` and ``https`` URLs, without user info;
- the host is resolved and refused when any address it resolves to is not globally routable
  (private, loopback, link-local, carrier-grade NAT, multicast, reserved) or is a cloud metadata
  address; hosts listed in ``allow_hosts`` (intranets, tests) are exempt;
- the request connects to the address that was checked (not to a second DNS answer), so a name
  that resolves to a public address once and to a private one later cannot slip through;
- at most ``max_redirects`` redirects, ``max_bytes`` of body and ``timeout_s`` per request.

Errors::

    SourceError
     ├── UnsafeURLError      refused by the rules above (never retried)
     └── SourceGone          404/410: the document no longer exists at the source
    ProviderUnavailable
     └── SourceUnavailable   transient: connection error, timeout, 5xx, 429 past its budget (retry)

A 429 (or 503) with a short ``Retry-After`` is waited out here, a few times, because the server
said exactly when to come back; anything longer becomes :class:`SourceUnavailable` and the caller
(the Celery task) owns the retry with backoff.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from bot.errors import ProviderUnavailable, SourceError, UnsafeURLError

__all__ = [
    "FetchPolicy",
    "Fetcher",
    "Response",
    "SourceGone",
    "SourceUnavailable",
    "check_url",
]

Resolver = Callable[[str, int], list[str]]
"""(host, port) -> the IP addresses the host resolves to."""

# Names that reach a cloud provider's instance metadata service; refused without resolving,
# since they only resolve inside the cloud, where they are the attack.
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})
_METADATA_IPS = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_AUTH_HEADERS = frozenset({"authorization", "cookie", "x-api-key"})


class SourceUnavailable(ProviderUnavailable):
    """A source could not be reached for now (connection error, timeout, 5xx, rate limit).

    ``retry_after`` is the server's hint in seconds, when it gave one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceGone(SourceError):
    """The document is not at the source any more (404 or 410)."""


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for fetching. ``allow_hosts`` entries are host names or IPs (``*.corp.example`` too)."""

    allow_hosts: frozenset[str] = frozenset()
    max_bytes: int = 20 << 20
    timeout_s: float = 20.0
    max_redirects: int = 5
    rate_limit_waits: int = 3  # how many 429/503 replies are waited out in place per request
    max_wait_s: float = 30.0  # the longest Retry-After waited out in place
    user_agent: str = "supportbot/0.1 (+knowledge sync)"

    def allows(self, host: str) -> bool:
        """Whether ``host`` is exempt from the private-address rule."""
        host = host.lower().strip("[]").rstrip(".")
        for entry in self.allow_hosts:
            entry = entry.lower().strip("[]").rstrip(".")
            if host == entry or (entry.startswith("*.") and host.endswith(entry[1:])):
                return True
        return False


@dataclass(frozen=True)
class Response:
    """A fetched body with the URL it finally came from (after redirects)."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_s: float = 0.0

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def json(self) -> Any:
        """The body parsed as JSON; a malformed body is a SourceError naming the URL."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise SourceError(self.url, "the reply is not valid JSON") from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _default_resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceError(host, f"cannot resolve the host name: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the IPv4 is the last 32 bits
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use: where the IPv4 sits varies
_TEREDO = ipaddress.ip_network("2001::/32")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries inside it (mapped, compatible, 6to4, Teredo, NAT64).

    A host that routes these (a 6to4 relay, a Teredo tunnel, a NAT64 gateway, a dual-stack
    socket for mapped addresses) delivers the packet to the embedded IPv4 address, so that
    address must pass the same rules.
    """
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        found.append(ip.ipv4_mapped)
    value = int(ip)
    if value >> 32 == 0 and value > 1:  # IPv4-compatible ::a.b.c.d (deprecated; :: and ::1 excluded)
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if ip.sixtofour is not None:  # 2002:AABB:CCDD::/48
        found.append(ip.sixtofour)
    if ip in _TEREDO and ip.teredo is not None:  # 2001:0:<server>:...:<client, obfuscated>
        found.extend(ip.teredo)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return found


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address may not be fetched, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return "a local-use NAT64 address"
        for inner in _embedded_ipv4(ip):
            why = _blocked(inner)
            if why is not None:
                return f"{why} ({inner}, embedded in the IPv6 address)"
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    if ip in _METADATA_IPS:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class _Target:
    url: str
    host: str
    port: int
    address: str  # the checked IP to connect to


def check_url(url: str, policy: FetchPolicy, resolve: Resolver = _default_resolve) -> str:
    """Check ``url`` against the rules; return the IP address to connect to.

    Raises :class:`UnsafeURLError` with an actionable reason when refused, and
    :class:`SourceError` when the host cannot be resolved.
    """
    return _check(url, policy, resolve).address


def _check(url: str, policy: FetchPolicy, resolve: Resolver) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(url, f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURLError(url, f"only http and https URLs can be fetched, not {scheme or 'a bare path'}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise UnsafeURLError(url, "the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError(
            url, "URLs with a user name or password are refused; configure credentials instead"
        )
    port = port or (443 if scheme == "https" else 80)
    allowed = policy.allows(host)
    hint = " (if this is an intranet host you trust, add it to SUPPORTBOT_FETCH_ALLOW_HOSTS)"
    if host in _METADATA_HOSTS and not allowed:
        raise UnsafeURLError(url, f"{host} is a cloud metadata host: fetching it is refused")
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal is not None else resolve(host, port)
    if not addresses:
        raise SourceError(url, f"{host} does not resolve to any address")
    if not allowed:
        for address in addresses:
            reason = _blocked(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason is not None:
                shown = f"{host} is" if literal is not None else f"{host} resolves to {address}, which is"
                raise UnsafeURLError(
                    url, f"{shown} {reason}: fetching it is refused to protect internal services{hint}"
                )
    return _Target(url, host, port, addresses[0])


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass
class Fetcher:
    """Fetches URLs under a :class:`FetchPolicy`. Thread-safe; pass ``client`` to reuse a pool.

    ``resolve`` and ``sleep`` are injectable for tests.
    """

    policy: FetchPolicy = field(default_factory=FetchPolicy)
    client: httpx.Client | None = None
    resolve: Resolver = _default_resolve
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        # trust_env=False: a proxy from the environment would connect on our behalf to hosts we
        # never checked. Redirects are followed here, one checked hop at a time.
        self._client = self.client or httpx.Client(
            timeout=self.policy.timeout_s, follow_redirects=False, trust_env=False
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (only when this Fetcher made it)."""
        if self.client is None:
            self._client.close()

    def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | Iterable[tuple[str, str | int]] | None = None,
        method: str = "GET",
        json_body: Any = None,
        max_bytes: int | None = None,
    ) -> Response:
        """Fetch ``url`` (following checked redirects) and return a 2xx response.

        Raises UnsafeURLError, SourceGone (404/410), SourceError (other 4xx, too large, bad
        redirect) or SourceUnavailable (transient). 429 and 503 with a short ``Retry-After``
        are waited out up to ``policy.rate_limit_waits`` times.
        """
        if params:
            url = str(httpx.URL(url, params=params))
        waits = 0
        while True:
            try:
                return self._follow(
                    url, method, dict(headers or {}), json_body, max_bytes or self.policy.max_bytes
                )
            except SourceUnavailable as exc:
                delay = exc.retry_after
                if delay is None or delay > self.policy.max_wait_s or waits >= self.policy.rate_limit_waits:
                    raise
                waits += 1
                self.sleep(delay)

    def _follow(
        self, url: str, method: str, headers: dict[str, str], json_body: Any, max_bytes: int
    ) -> Response:
        start = time.monotonic()
        first_host = urlsplit(url).hostname
        for _hop in range(self.policy.max_redirects + 1):
            target = _check(url, self.policy, self.resolve)
            if urlsplit(url).hostname != first_host:
                # Never carry credentials to another host a redirect points at.
                headers = {k: v for k, v in headers.items() if k.lower() not in _AUTH_HEADERS}
            status, reply_headers, body, location = self._once(target, method, headers, json_body, max_bytes)
            if status in _REDIRECTS and location:
                url = urljoin(url, location)
                if status == 303 or (status in (301, 302) and method == "POST"):
                    method, json_body = "GET", None
                continue
            return self._judge(url, status, reply_headers, body, time.monotonic() - start)
        raise SourceError(url, f"more than {self.policy.max_redirects} redirects")

    def _once(
        self, target: _Target, method: str, headers: dict[str, str], json_body: Any, max_bytes: int
    ) -> tuple[int, dict[str, str], bytes, str | None]:
        parts = urlsplit(target.url)
        ip = target.address
        netloc = f"[{ip}]" if ":" in ip else ip
        if parts.port:
            netloc += f":{parts.port}"
        # Connect to the checked address; Host and TLS SNI (and so certificate checks) keep the name.
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        send_headers = {
            "user-agent": self.policy.user_agent,
            **headers,
            "host": parts.netloc.rsplit("@", 1)[-1],
        }
        extensions = {"sni_hostname": target.host} if parts.scheme == "https" else {}
        try:
            request = self._client.build_request(
                method, pinned, headers=send_headers, json=json_body, extensions=extensions
            )
            reply = self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise SourceUnavailable(f"{target.url}: timed out after {self.policy.timeout_s:g}s") from None
        except httpx.TransportError as exc:
            raise SourceUnavailable(f"{target.url}: cannot connect ({type(exc).__name__})") from None
        try:
            location = reply.headers.get("location")
            if reply.status_code in _REDIRECTS:
                return reply.status_code, dict(reply.headers), b"", location
            declared = reply.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise SourceError(target.url, f"larger than the {max_bytes >> 20} MB fetch limit")
            chunks: list[bytes] = []
            size = 0
            for chunk in reply.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise SourceError(target.url, f"larger than the {max_bytes >> 20} MB fetch limit")
                chunks.append(chunk)
            return reply.status_code, dict(reply.headers), b"".join(chunks), location
        except httpx.TimeoutException:
            raise SourceUnavailable(f"{target.url}: timed out after {self.policy.timeout_s:g}s") from None
        except httpx.TransportError as exc:
            raise SourceUnavailable(f"{target.url}: connection lost ({type(exc).__name__})") from None
        finally:
            reply.close()

    def _judge(self, url: str, status: int, headers: dict[str, str], body: bytes, elapsed: float) -> Response:
        lower = {k.lower(): v for k, v in headers.items()}
        if 200 <= status < 300:
            return Response(url, status, lower, body, elapsed)
        retry_after = _retry_after(lower.get("retry-after"))
        # GitHub signals an exhausted rate limit with 403 and x-ratelimit-remaining: 0.
        if status == 403 and lower.get("x-ratelimit-remaining") == "0":
            reset = lower.get("x-ratelimit-reset", "")
            retry_after = retry_after or (max(0.0, float(reset) - time.time()) if reset.isdigit() else 60.0)
            raise SourceUnavailable(f"{url}: rate limited (403, limit exhausted)", retry_after)
        if status == 429:
            raise SourceUnavailable(f"{url}: rate limited (429)", retry_after)
        if status >= 500:
            raise SourceUnavailable(
                f"{url}: the server failed ({status})", retry_after if status == 503 else None
            )
        if status in (404, 410):
            raise SourceGone(url, f"not found ({status})")
        if status in (401, 403):
            raise SourceError(
                url, f"access denied ({status}): check the credentials configured for this source"
            )
        raise SourceError(url, f"the server refused the request ({status})")
