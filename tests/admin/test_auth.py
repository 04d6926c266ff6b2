"""Admin access: loopback only, or a bearer token from anywhere; probes open; never forwarded upstream."""

from __future__ import annotations

import pytest

from proxy.admin.auth import bearer_token, is_allowed, is_loopback
from proxy.app import ProxyApp
from proxy.config import Settings
from tests.admin.conftest import admin_client, run_proxy
from tests.support.origin import RunningOrigin

UPSTREAM = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", False),
        ("192.168.1.10", False),
        ("::ffff:10.1.2.3", False),
        ("localhost", False),  # a name, not an address: ASGI servers give addresses
        ("", False),
        (None, False),
    ],
    ids=lambda v: repr(v),
)
def test_admin_auth_loopback_addresses(host: str | None, expected: bool) -> None:
    assert is_loopback(host) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer s3cret")], b"s3cret"),
        ([(b"authorization", b"bearer s3cret ")], b"s3cret"),
        ([(b"authorization", b"Basic czNjcmV0")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([], None),
    ],
    ids=["rfc6750-2.1-bearer", "rfc6750-2.1-scheme-case-insensitive", "basic-is-not-bearer", "empty-token", "none"],
)
def test_admin_auth_bearer_token(headers: list[tuple[bytes, bytes]], expected: bytes | None) -> None:
    assert bearer_token({"headers": headers}) == expected


def test_admin_auth_token_required_even_from_loopback() -> None:
    scope = {"client": ("127.0.0.1", 1), "headers": []}
    assert is_allowed(scope, None)
    assert not is_allowed(scope, "s3cret")
    assert is_allowed({**scope, "headers": [(b"authorization", b"Bearer s3cret")]}, "s3cret")
    assert not is_allowed({**scope, "headers": [(b"authorization", b"Bearer wrong")]}, "s3cret")


@pytest.mark.parametrize("path", ["/metrics", "/stats.json", "/", "/no-such-page"])
async def test_admin_auth_non_loopback_client_gets_403(path: str) -> None:
    app = ProxyApp(Settings(upstream=UPSTREAM))
    async with admin_client(app, client=("10.1.2.3", 1234)) as client:
        response = await client.get("/_cacheproxy" + path)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")


async def test_admin_auth_non_loopback_purge_gets_403() -> None:
    app = ProxyApp(Settings(upstream=UPSTREAM))
    async with admin_client(app, client=("10.1.2.3", 1234)) as client:
        response = await client.post("/_cacheproxy/purge", json={"tag": "x"})
    assert response.status_code == 403


@pytest.mark.parametrize("path", ["/healthz"])
async def test_admin_auth_probes_answer_everyone(path: str) -> None:
    app = ProxyApp(Settings(upstream=UPSTREAM, admin_token="s3cret"))
    async with admin_client(app, client=("10.1.2.3", 1234)) as client:
        response = await client.get("/_cacheproxy" + path)
    assert response.status_code == 200


async def test_admin_auth_token_from_anywhere() -> None:
    app = ProxyApp(Settings(upstream=UPSTREAM, admin_token="s3cret"))
    async with admin_client(app, client=("10.1.2.3", 1234)) as client:
        good = await client.get("/_cacheproxy/metrics", headers={"Authorization": "Bearer s3cret"})
        bad = await client.get("/_cacheproxy/metrics", headers={"Authorization": "Bearer nope"})
        missing = await client.get("/_cacheproxy/metrics")
    assert (good.status_code, bad.status_code, missing.status_code) == (200, 403, 403)


async def test_admin_auth_loopback_allowed_without_token() -> None:
    app = ProxyApp(Settings(upstream=UPSTREAM))
    async with admin_client(app, client=("::1", 1234)) as client:
        response = await client.get("/_cacheproxy/metrics")
    assert response.status_code == 200


async def test_admin_prefix_never_forwarded_upstream(origin: RunningOrigin) -> None:
    """A request under the prefix from a client that may not use it: 403 from the proxy, the origin never asked."""
    async with run_proxy(origin.url, admin_token="s3cret") as proxy:
        for path in ("/_cacheproxy/metrics", "/_cacheproxy/anything", "/_cacheproxy", "/%5Fcacheproxy/metrics"):
            response = await proxy.client.get(path)
            assert response.status_code == 403, path
            assert "cache-status" not in response.headers
        allowed = await proxy.client.get("/_cacheproxy/unknown", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 404
    assert origin.requests == []


async def test_admin_custom_prefix(origin: RunningOrigin) -> None:
    async with run_proxy(origin.url, admin_prefix="/-/admin") as proxy:
        health = await proxy.client.get("/-/admin/healthz")
        forwarded = await proxy.client.get("/_cacheproxy/healthz")
    assert health.text == "ok\n"
    assert forwarded.text == "origin /_cacheproxy/healthz"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (b"localhost", True), (b"LOCALHOST:8080", True), (b"127.0.0.1:8080", True), (b"[::1]:8080", True),
        (b"cache.internal:1", True), (b"rebound.attacker.example", False), (b"127.0.0.1.nip.io", False),
        (b"localhost.attacker.example", False), (b"[::2]", False),
    ],
)  # fmt: skip
def test_issue9_5_admin_host_names_against_dns_rebinding(host: bytes, allowed: bool) -> None:
    from proxy.admin.auth import admin_hosts, host_allowed

    assert host_allowed({"headers": [(b"host", host)]}, admin_hosts("cache.internal, other:99")) is allowed


def test_issue9_5_admin_uses_the_client_the_edge_resolved() -> None:
    from proxy.head import SCOPE_KEY
    from proxy.messages import RequestHead

    forwarded = RequestHead("GET", "http", "localhost", "/", client="203.0.113.9", peer="127.0.0.1")
    assert not is_allowed({"client": ("127.0.0.1", 1), "headers": [], SCOPE_KEY: forwarded}, None)
    sidecar = RequestHead("GET", "http", "localhost", "/", client="127.0.0.6", peer="127.0.0.6")
    assert not is_allowed({"client": ("127.0.0.6", 1), "headers": [], SCOPE_KEY: sidecar}, None)
