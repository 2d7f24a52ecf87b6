"""SSRF rules and limits of knowledge/fetch.py, against a fake site on 127.0.0.1.

No request ever leaves this machine: refused addresses are refused before connecting, and host
names that "resolve" to private addresses do so through an injected resolver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.errors import ProviderUnavailable, SourceError, UnsafeURLError
from knowledge.fetch import Fetcher, FetchPolicy, SourceGone, SourceUnavailable, check_url
from tests.fakes.connectors_server import WebsiteFake

LOCAL = FetchPolicy(allow_hosts=frozenset({"127.0.0.1"}), timeout_s=5)


@pytest.fixture
def make_fetcher() -> Iterator[Callable[..., Fetcher]]:
    """Make Fetchers and close them all (their connection pools) at teardown."""
    made: list[Fetcher] = []

    def make(*args: Any, **kwargs: Any) -> Fetcher:
        made.append(Fetcher(*args, **kwargs))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture
def site() -> Iterator[WebsiteFake]:
    with WebsiteFake() as fake:
        fake.html("/docs/a.html", "Page A", "Alpha text.")
        fake.site.files["/big.txt"] = ("text/plain", b"x" * 4096)
        yield fake


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://10.0.0.5/admin", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::1]:8080/", "loopback"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://localhost:6379/", "loopback"),
        ("http://0.0.0.0/", "address"),
        # IPv6 addresses that carry a private IPv4 inside them (issue 14)
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
        ("http://[2002:a00:1::1]/", "private"),  # 6to4 of 10.0.0.1
        ("http://[2002:a9fe:a9fe::]/", "metadata"),  # 6to4 of 169.254.169.254
        ("http://[::7f00:1]/", "loopback"),  # IPv4-compatible ::127.0.0.1
        ("http://[::a00:1]/", "private"),  # IPv4-compatible ::10.0.0.1
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "loopback"),  # Teredo, client 127.0.0.1
        ("http://[64:ff9b::7f00:1]/", "loopback"),  # NAT64 well-known prefix
        ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),
        ("http://[64:ff9b:1::a00:1]/", "NAT64"),  # local-use NAT64
        ("http://[::ffff:7f00:1]/", "loopback"),  # IPv4-mapped, hex form
    ],
)
def test_private_loopback_link_local_and_metadata_addresses_are_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeURLError) as info:
        check_url(url, FetchPolicy())
    assert why in str(info.value)
    assert "SUPPORTBOT_FETCH_ALLOW_HOSTS" in str(info.value) or "metadata" in str(info.value)


@pytest.mark.parametrize("address", ["2002:808:808::1"])
def test_ipv6_embedding_a_public_ipv4_is_not_refused_for_it(address: str) -> None:
    assert check_url(f"http://[{address}]/", FetchPolicy()) == address


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://x/", "/etc/passwd"])
def test_only_http_and_https_are_fetched(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="only http and https"):
        check_url(url, FetchPolicy())


def test_credentials_in_urls_are_refused() -> None:
    with pytest.raises(UnsafeURLError, match="user name or password"):
        check_url("https://user:pw@example.com/", FetchPolicy(), resolve=lambda h, p: ["93.184.215.14"])


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolve = {"intranet.example": ["10.1.2.3"], "mixed.example": ["93.184.215.14", "172.16.0.9"]}
    with pytest.raises(UnsafeURLError, match=r"intranet.example resolves to 10.1.2.3, which is a private"):
        check_url("https://intranet.example/wiki", FetchPolicy(), resolve=lambda h, p: resolve[h])
    with pytest.raises(UnsafeURLError, match="172.16.0.9"):  # any private answer refuses the name
        check_url("https://mixed.example/", FetchPolicy(), resolve=lambda h, p: resolve[h])
    assert (
        check_url("https://public.example/", FetchPolicy(), resolve=lambda h, p: ["93.184.215.14"])
        == "93.184.215.14"
    )


def test_the_allow_list_exempts_listed_hosts_only() -> None:
    policy = FetchPolicy(allow_hosts=frozenset({"wiki.corp.example", "*.intra.example", "127.0.0.1"}))
    to_private = lambda h, p: ["10.9.9.9"]  # noqa: E731
    assert check_url("https://wiki.corp.example/x", policy, resolve=to_private) == "10.9.9.9"
    assert check_url("https://docs.intra.example/x", policy, resolve=to_private) == "10.9.9.9"
    assert check_url("http://127.0.0.1:8000/", policy) == "127.0.0.1"
    with pytest.raises(UnsafeURLError):
        check_url("https://other.corp.example/x", policy, resolve=to_private)
    with pytest.raises(UnsafeURLError):
        check_url("http://127.0.0.2/", policy)


def test_fetch_from_an_allowed_host_and_its_errors(make_fetcher: Callable[..., Fetcher], site: WebsiteFake) -> None:
    fetcher = make_fetcher(LOCAL)
    reply = fetcher.get(site.url + "/docs/a.html")
    assert reply.status == 200 and b"Alpha text." in reply.body
    assert reply.content_type and reply.content_type.startswith("text/html")
    with pytest.raises(SourceGone, match="404"):
        fetcher.get(site.url + "/missing.html")
    with pytest.raises(UnsafeURLError):  # the same server is refused without the allow-list
        make_fetcher(FetchPolicy()).get(site.url + "/docs/a.html")


def test_a_redirect_to_a_private_address_is_refused_before_connecting(make_fetcher: Callable[..., Fetcher], site: WebsiteFake) -> None:
    site.site.redirects["/go"] = "http://10.0.0.7/internal"
    site.site.redirects["/meta"] = "http://169.254.169.254/latest/meta-data/iam"
    fetcher = make_fetcher(LOCAL)
    with pytest.raises(UnsafeURLError, match="10.0.0.7 is a private address"):
        fetcher.get(site.url + "/go")
    with pytest.raises(UnsafeURLError, match="metadata"):
        fetcher.get(site.url + "/meta")
    site.site.redirects["/ok"] = "/docs/a.html"  # a redirect within the allowed host is followed
    assert fetcher.get(site.url + "/ok").url.endswith("/docs/a.html")


def test_redirect_and_size_limits(make_fetcher: Callable[..., Fetcher], site: WebsiteFake) -> None:
    for i in range(4):
        site.site.redirects[f"/r{i}"] = f"/r{i + 1}"
    site.site.redirects["/r4"] = "/docs/a.html"
    with pytest.raises(SourceError, match="more than 2 redirects"):
        make_fetcher(FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_redirects=2)).get(site.url + "/r0")
    assert make_fetcher(LOCAL).get(site.url + "/r0").status == 200
    with pytest.raises(SourceError, match="fetch limit"):
        make_fetcher(FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_bytes=1000)).get(site.url + "/big.txt")


def test_rate_limits_are_waited_out_then_reported_as_transient(make_fetcher: Callable[..., Fetcher], site: WebsiteFake) -> None:
    waits: list[float] = []
    fetcher = make_fetcher(LOCAL, sleep=waits.append)
    site.rate_limit_next(2, retry_after=1.5)
    assert fetcher.get(site.url + "/docs/a.html").status == 200
    assert waits == [1.5, 1.5]
    site.rate_limit_next(5, retry_after=1)
    with pytest.raises(SourceUnavailable, match="429") as info:
        fetcher.get(site.url + "/docs/a.html")
    assert isinstance(info.value, ProviderUnavailable) and info.value.retry_after == 1
    site.fail_next(1, status=502)
    with pytest.raises(SourceUnavailable, match="502"):
        fetcher.get(site.url + "/docs/a.html")


def test_an_unreachable_host_is_transient(make_fetcher: Callable[..., Fetcher]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceUnavailable, match="cannot connect"):
        make_fetcher(LOCAL).get(f"http://127.0.0.1:{port}/")
