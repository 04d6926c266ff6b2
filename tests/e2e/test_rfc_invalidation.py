"""Issue 15 item 5 over the wire: invalidation after unsafe methods (RFC 9111 §4.4) and purge by URL reach every
entry stored for the URL, also on routes whose key includes request headers or cookies; memory and Redis stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Proxied, run_proxy
from tests.support.origin import RunningOrigin

RULES = """
routes:
  - name: shaped
    match: {path: /shaped/**}
    ttl: 60s
    key:
      headers: [X-Tenant]
      cookies: [segment]
"""

SHAPES = [
    {"X-Tenant": "a"},
    {"X-Tenant": "b"},
    {"X-Tenant": "a", "Cookie": "segment=gold"},
    {},
]


@pytest.fixture(params=["memory", "redis"])
async def shaped(request: pytest.FixtureRequest, origin: RunningOrigin, tmp_path: Path) -> AsyncIterator[Proxied]:
    store = "memory" if request.param == "memory" else request.getfixturevalue("redis_url")
    async with run_proxy(origin, RULES, tmp_path, store=store) as proxy:
        yield proxy


async def _fill(proxy: Proxied, path: str) -> None:
    for headers in SHAPES:
        await proxy.client.get(path, headers=headers)
    for headers in SHAPES:
        assert (await proxy.client.get(path, headers=headers)).headers["cache-status"].startswith("cacheproxy; hit")
    assert proxy.origin.hits[path] == len(SHAPES)


async def _all_missed(proxy: Proxied, path: str) -> None:
    for headers in SHAPES:
        status = (await proxy.client.get(path, headers=headers)).headers["cache-status"]
        assert "fwd=uri-miss" in status


async def test_rfc9111_4_4_unsafe_method_invalidates_every_key_shape(shaped: Proxied) -> None:
    await _fill(shaped, "/shaped/item")
    assert (await shaped.client.post("/shaped/item", content=b"x")).status_code == 200
    await _all_missed(shaped, "/shaped/item")


async def test_rfc9111_4_4_content_location_invalidates_every_key_shape(shaped: Proxied) -> None:
    await _fill(shaped, "/shaped/target")
    shaped.origin.set("/shaped/form", headers={"Content-Location": "/shaped/target"}, body="ok")
    await shaped.client.put("/shaped/form", content=b"x")
    await _all_missed(shaped, "/shaped/target")


async def test_purge_url_removes_every_key_shape(shaped: Proxied) -> None:
    await _fill(shaped, "/shaped/p")
    purged = await shaped.client.post("/_cacheproxy/purge", json={"url": "/shaped/p"})
    assert purged.json() == {"purged": len(SHAPES)}
    await _all_missed(shaped, "/shaped/p")


async def test_purge_url_leaves_other_urls(shaped: Proxied) -> None:
    await _fill(shaped, "/shaped/keep")
    await _fill(shaped, "/shaped/drop")
    await shaped.client.post("/_cacheproxy/purge", json={"url": "/shaped/drop"})
    kept = await shaped.client.get("/shaped/keep", headers={"X-Tenant": "b"})
    assert kept.headers["cache-status"].startswith("cacheproxy; hit")
