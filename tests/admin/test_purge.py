"""Purge by URL (every variant), prefix and tag; the PURGE method; purge tags never reach clients."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from proxy.admin.purge import PurgeRequest, PurgeRequestError, absolute_url, parse_purge
from proxy.errors import StorageError
from tests.admin.conftest import CACHEABLE, RunningProxy, run_proxy
from tests.admin.test_health import DegradedStore
from tests.support.origin import RunningOrigin


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"url": "https://a.example/x?y=1"}', PurgeRequest("url", "https://a.example/x?y=1")),
        (b'{"url": "/x"}', PurgeRequest("url", "/x")),
        (b'{"prefix": "/api/products/"}', PurgeRequest("prefix", "/api/products/")),
        (b'{"tag": "products"}', PurgeRequest("tag", "products")),
    ],
    ids=["purge-url-absolute", "purge-url-path", "purge-prefix", "purge-tag"],
)
def test_purge_body_accepted(body: bytes, expected: PurgeRequest) -> None:
    assert parse_purge(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1]",
        b"{}",
        b'{"url": "/a", "tag": "b"}',
        b'{"path": "/a"}',
        b'{"tag": ""}',
        b'{"tag": 3}',
        b'{"prefix": "api/"}',
        b"\xff",
    ],
    ids=[
        "empty",
        "not-json",
        "list",
        "no-key",
        "two-keys",
        "unknown-key",
        "empty-tag",
        "tag-not-string",
        "prefix-not-path",
        "not-utf8",
    ],
)
def test_purge_body_rejected(body: bytes) -> None:
    with pytest.raises(PurgeRequestError):
        parse_purge(body)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("/a?b=1", "http://h:8/a?b=1"), ("https://x.example/a", "https://x.example/a"), ("//x/a", "//x/a")],
    ids=["path-resolved-against-host", "absolute-kept", "network-path-not-resolved"],
)
def test_purge_url_resolution(url: str, expected: str) -> None:
    assert absolute_url(url, "http", "h:8") == expected


async def cache_status(proxy: RunningProxy, path: str, **headers: str) -> str:
    response = await proxy.client.get(path, headers=headers)
    assert response.status_code == 200
    return response.headers["cache-status"]


async def warm(proxy: RunningProxy, *paths: str) -> None:
    """Fetch each path twice: stored, then a hit."""
    for path in paths:
        await cache_status(proxy, path)
        assert "hit" in await cache_status(proxy, path), path


async def test_purge_url_removes_every_variant(proxy: RunningProxy, origin: RunningOrigin) -> None:
    origin.set("/v", headers={**CACHEABLE, "Vary": "Accept-Language"}, body="v")
    for lang in ("en", "fr"):
        await cache_status(proxy, "/v", **{"accept-language": lang})
        assert "hit" in await cache_status(proxy, "/v", **{"accept-language": lang})
    response = await proxy.client.post("/_cacheproxy/purge", json={"url": "/v"})
    assert response.json() == {"purged": 2}
    assert "fwd=uri-miss" in await cache_status(proxy, "/v", **{"accept-language": "en"})
    assert origin.hits["/v"] == 3


async def test_purge_absolute_url(proxy: RunningProxy, origin: RunningOrigin) -> None:
    origin.set("/a", headers=CACHEABLE, body="a")
    await warm(proxy, "/a?x=1")
    response = await proxy.client.post("/_cacheproxy/purge", json={"url": proxy.url + "/a?x=1"})
    assert response.json() == {"purged": 1}
    assert "fwd=uri-miss" in await cache_status(proxy, "/a?x=1")
    assert origin.hits["/a?x=1"] == 2


async def test_purge_prefix(proxy: RunningProxy, origin: RunningOrigin) -> None:
    for path in ("/api/products/1", "/api/products/2", "/api/orders/1"):
        origin.set(path, headers=CACHEABLE, body=path)
    await warm(proxy, "/api/products/1", "/api/products/2", "/api/orders/1")
    response = await proxy.client.post("/_cacheproxy/purge", json={"prefix": "/api/products/"})
    assert response.json() == {"purged": 2}
    assert "fwd=uri-miss" in await cache_status(proxy, "/api/products/1")
    assert "hit" in await cache_status(proxy, "/api/orders/1")
    assert (origin.hits["/api/products/1"], origin.hits["/api/orders/1"]) == (2, 1)


async def test_purge_tag_from_surrogate_key_and_cache_tag(proxy: RunningProxy, origin: RunningOrigin) -> None:
    """Tags from the origin's Surrogate-Key (space-separated) and Cache-Tag (comma-separated), hidden from clients."""
    origin.set("/t1", headers={**CACHEABLE, "Surrogate-Key": "red shared"}, body="1")
    origin.set("/t2", headers={**CACHEABLE, "Cache-Tag": "shared, blue"}, body="2")
    origin.set("/t3", headers=CACHEABLE, body="3")
    for path in ("/t1", "/t2", "/t3"):
        for _ in range(2):
            response = await proxy.client.get(path)
            assert "surrogate-key" not in response.headers
            assert "cache-tag" not in response.headers
    purged = await proxy.client.post("/_cacheproxy/purge", json={"tag": "shared"})
    assert purged.json() == {"purged": 2}
    assert "fwd=uri-miss" in await cache_status(proxy, "/t1")
    assert "fwd=uri-miss" in await cache_status(proxy, "/t2")
    assert "hit" in await cache_status(proxy, "/t3")
    again = await proxy.client.post("/_cacheproxy/purge", json={"tag": "blue"})
    assert again.json() == {"purged": 1}


async def test_purge_tag_from_route_tags(origin: RunningOrigin, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("routes:\n  - name: catalogue\n    match:\n      path: /cat/**\n    tags: [catalogue]\n")
    origin.set("/cat/1", headers=CACHEABLE, body="1")
    async with run_proxy(origin.url, rules=rules) as proxy:
        await warm(proxy, "/cat/1")
        response = await proxy.client.post("/_cacheproxy/purge", json={"tag": "catalogue"})
        assert response.json() == {"purged": 1}
        assert "fwd=uri-miss" in await cache_status(proxy, "/cat/1")


async def test_purge_bad_body_400(proxy: RunningProxy) -> None:
    response = await proxy.client.post(
        "/_cacheproxy/purge", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.text
    unknown = await proxy.client.post("/_cacheproxy/purge", json={"everything": True})
    assert unknown.status_code == 400
    get = await proxy.client.get("/_cacheproxy/purge")
    assert get.status_code == 405


class FailingStore(DegradedStore):
    async def delete_tag(self, tag: str) -> int:
        raise StorageError("redis: connection refused")


async def test_purge_store_failure_503(proxy: RunningProxy) -> None:
    proxy.app.runtime.set_store("redis", FailingStore())
    response = await proxy.client.post("/_cacheproxy/purge", json={"tag": "x"})
    assert response.status_code == 503
    assert "store unavailable" in response.json()["error"]


async def test_purge_method_when_allowed(origin: RunningOrigin) -> None:
    origin.set("/p", headers=CACHEABLE, body="p")
    async with run_proxy(origin.url, allow_purge_method=True) as proxy:
        await warm(proxy, "/p")
        response = await proxy.client.request("PURGE", "/p")
        assert response.json() == {"purged": 1}
        assert "fwd=uri-miss" in await cache_status(proxy, "/p")
    assert [r.method for r in origin.requests] == ["GET", "GET"]


async def test_purge_method_needs_an_allowed_client(origin: RunningOrigin) -> None:
    origin.set("/p", headers=CACHEABLE, body="p")
    async with run_proxy(origin.url, allow_purge_method=True, admin_token="s3cret") as proxy:
        await warm(proxy, "/p")
        denied = await proxy.client.request("PURGE", "/p")
        assert denied.status_code == 403
        assert "hit" in await cache_status(proxy, "/p")
        allowed = await proxy.client.request("PURGE", "/p", headers={"Authorization": "Bearer s3cret"})
        assert allowed.json() == {"purged": 1}
    assert "PURGE" not in [r.method for r in origin.requests]


async def test_purge_method_off_by_default_goes_upstream(proxy: RunningProxy, origin: RunningOrigin) -> None:
    """Without --allow-purge-method, PURGE is just another unsafe method, forwarded to the origin."""
    await proxy.client.request("PURGE", "/p")
    assert [r.method for r in origin.requests] == ["PURGE"]


async def test_purge_cli_calls_the_admin_api(
    proxy: RunningProxy, origin: RunningOrigin, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cacheproxy purge --url/--prefix/--tag`` (run in a thread: it is a blocking client of this loop's server)."""
    from proxy.cli import main

    origin.set("/cli/a", headers={**CACHEABLE, "Surrogate-Key": "cli"}, body="a")
    await warm(proxy, "/cli/a")
    assert await asyncio.to_thread(main, ["purge", "--tag", "cli", "--proxy", proxy.url]) == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 1}
    await warm(proxy, "/cli/a")
    assert await asyncio.to_thread(main, ["purge", "--prefix", "/cli/", "--proxy", proxy.url]) == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 1}
    assert "fwd=uri-miss" in await cache_status(proxy, "/cli/a")
